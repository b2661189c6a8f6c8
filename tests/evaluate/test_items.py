"""Per-item results come from lm-eval's logged samples and add up to lm-eval's own scores; two models are
compared on them with the test their metric calls for."""

from __future__ import annotations

import json
import math

import pytest
from scipy.stats import binomtest

from evomerge.evaluate.items import ItemsError, ObjectiveItems, compare_each, compare_items, items_from_json, items_to_json
from evomerge.evaluate.model import evaluate_items
from evomerge.spec.merge_search import Objective
from tests.evaluate.support import ALL_TYPES


@pytest.fixture(scope="module")
def scored(tiny_family, task_dir):
    return evaluate_items({"base": tiny_family["base"], "expert": tiny_family["expert0"]}, ALL_TYPES, [str(task_dir)],
                          device="cpu", batch_size=4)


def test_items_are_lm_evals_samples_and_aggregate_to_its_scores(scored):
    for name in ("base", "expert"):
        scores, items = scored[name]
        for objective in ALL_TYPES:
            objective_items = items[objective.key]
            assert objective_items.aggregate(sorted(objective_items.values)) == pytest.approx(scores[objective.key], rel=1e-9)
    _, items = scored["base"]
    assert len(items["tiny_gen/exact_match"].values) == 4 and set(items["tiny_next/acc"].values) == {f"tiny_next:{i}" for i in range(6)}
    assert items["tiny_next/acc"].aggregation == "mean" and items["tiny_next/acc"].pass_fail
    assert items["tiny_next/perplexity"].aggregation == "perplexity" and not items["tiny_next/perplexity"].pass_fail
    word = next(iter(items["tiny_text/word_perplexity"].values.values()))
    assert isinstance(word, list) and len(word) == 2  # (log-likelihood, words): kept for the aggregation
    assert items_from_json(json.loads(json.dumps(items_to_json(items)))) == items


def test_a_model_against_itself_shows_no_difference(scored):
    _, items = scored["expert"]
    for objective in ALL_TYPES:
        test = compare_items([objective], items, items, iterations=50)
        assert (test.difference, test.p_value) == (0.0, 1.0)


def test_pass_fail_items_get_mcnemar_and_continuous_ones_the_bootstrap(scored):
    (_, base), (scores, expert) = scored["base"], scored["expert"]
    acc, perplexity = (o for o in ALL_TYPES if o.task == "tiny_next")

    assert compare_items([acc], base, expert).test == "mcnemar"
    test = compare_items([perplexity], base, expert, iterations=200)
    assert test.test == "bootstrap" and test.items == 6
    assert test.candidate == pytest.approx(-math.log(scores[perplexity.key]))  # as the search weighs it
    assert set(compare_each(ALL_TYPES, base, expert)) == {o.key for o in ALL_TYPES}


def binary(values: list[int], task: str = "t") -> ObjectiveItems:
    return ObjectiveItems("mean", {f"{task}:{i}": v for i, v in enumerate(values)})


def test_pass_fail_objectives_weighing_items_alike_are_pooled_into_one_mcnemar():
    one, two = Objective(task="a", metric="acc"), Objective(task="b", metric="acc")
    baseline = {one.key: binary([1, 1, 0, 0, 1, 0], "a"), two.key: binary([0, 0, 1, 0, 1, 1], "b")}
    candidate = {one.key: binary([1, 1, 1, 1, 1, 0], "a"), two.key: binary([1, 1, 1, 1, 0, 1], "b")}

    test = compare_items([one, two], baseline, candidate)

    assert test.test == "mcnemar" and test.items == 12 and test.discordant == (5, 1)
    assert test.p_value == pytest.approx(binomtest(5, 6, 0.5).pvalue)
    assert (test.baseline, test.candidate) == pytest.approx((6 / 12, 10 / 12))
    heavier = Objective(task="a", metric="acc", weight=2)  # items of a now count twice: not a share of items
    assert compare_items([heavier, two], {**baseline, heavier.key: baseline[one.key]},
                         {**candidate, heavier.key: candidate[one.key]}, iterations=100).test == "bootstrap"


def test_minimised_pass_fail_items_count_a_zero_as_the_better_outcome():
    errors = Objective(task="a", metric="error", direction="minimize")
    test = compare_items([errors], {errors.key: binary([1, 1, 1, 0])}, {errors.key: binary([0, 0, 1, 0])})
    assert test.discordant == (2, 0) and test.difference == pytest.approx(0.5)


def test_items_missing_or_disjoint_are_refused_with_the_objective_named():
    acc = Objective(task="t", metric="acc")
    with pytest.raises(ItemsError, match="t/acc: the candidate has no per-item results"):
        compare_items([acc], {acc.key: binary([1])}, {})
    with pytest.raises(ItemsError, match="t/acc: the two models were scored on different items"):
        compare_items([acc], {acc.key: binary([1], "x")}, {acc.key: binary([1], "y")})
