"""The paired tests against known values: scipy's exact binomial test for McNemar, the paired t-test for
the bootstrap on large normal samples (the two agree asymptotically)."""

from __future__ import annotations

import random

import pytest
from scipy.stats import binomtest, ttest_rel

from evomerge.evaluate.paired import PairedTest, mcnemar_exact, paired_bootstrap


def outcomes(both: int, only_baseline: int, only_candidate: int, neither: int) -> tuple[list[bool], list[bool]]:
    """Paired pass/fail outcomes with the given 2×2 table."""
    baseline = [True] * both + [True] * only_baseline + [False] * only_candidate + [False] * neither
    candidate = [True] * both + [False] * only_baseline + [True] * only_candidate + [False] * neither
    return baseline, candidate


@pytest.mark.parametrize("table", [(10, 1, 9, 5), (3, 0, 6, 1), (40, 7, 7, 40), (0, 2, 11, 0), (5, 12, 4, 3), (20, 1, 0, 2)])
def test_mcnemar_is_scipys_exact_binomial_test_on_the_discordant_pairs(table):
    both, only_baseline, only_candidate, neither = table
    p_value, discordant = mcnemar_exact(*outcomes(*table))

    assert discordant == (only_candidate, only_baseline)
    expected = binomtest(only_candidate, only_candidate + only_baseline, 0.5).pvalue
    assert p_value == pytest.approx(expected, rel=1e-12)


def test_mcnemar_textbook_values():
    # 1 against 9 discordant pairs: 2 · (1 + 10) / 2^10 = 0.021484375, exactly.
    assert mcnemar_exact(*outcomes(10, 1, 9, 5))[0] == 0.021484375
    assert mcnemar_exact(*outcomes(4, 0, 0, 4)) == (1.0, (0, 0))  # no discordant pair: no evidence either way
    assert mcnemar_exact(*outcomes(0, 3, 3, 0))[0] == 1.0


def test_mcnemar_needs_the_same_items():
    with pytest.raises(ValueError, match="same items"):
        mcnemar_exact([True, False], [True])


def mean_difference(baseline: list[float], candidate: list[float]):
    def difference(draw):
        chosen = draw["items"]
        return sum(candidate[i] - baseline[i] for i in chosen) / len(chosen)
    return difference


def test_the_bootstrap_agrees_with_the_paired_t_test_on_large_normal_samples():
    rng = random.Random(5)
    baseline = [rng.gauss(0.5, 0.2) for _ in range(400)]
    for shift in (0.0, 0.012, 0.02, 0.04):
        candidate = [b + shift + rng.gauss(0.0, 0.15) for b in baseline]
        observed, p_value = paired_bootstrap(mean_difference(baseline, candidate), {"items": 400}, iterations=4000, seed=1)

        assert observed == pytest.approx(sum(candidate) / 400 - sum(baseline) / 400)
        assert p_value == pytest.approx(ttest_rel(candidate, baseline).pvalue, abs=0.03)


def test_the_bootstrap_is_deterministic_for_a_seed_and_never_zero():
    rng = random.Random(2)
    baseline = [rng.random() for _ in range(50)]
    candidate = [b + 0.3 for b in baseline]  # a constant gain: every resample shows exactly it
    difference = mean_difference(baseline, candidate)

    first = paired_bootstrap(difference, {"items": 50}, iterations=500, seed=3)
    assert first == paired_bootstrap(difference, {"items": 50}, iterations=500, seed=3)
    assert first[1] == pytest.approx(1 / 501)
    assert paired_bootstrap(mean_difference(baseline, baseline), {"items": 50}, iterations=200)[1] == 1.0


def test_the_bootstrap_draws_every_stratum_and_refuses_empty_ones():
    seen = []
    paired_bootstrap(lambda draw: seen.append({k: len(v) for k, v in draw.items()}) or 0.0, {"a": 3, "b": 5}, iterations=2)
    assert seen == [{"a": 3, "b": 5}] * 3  # the observed statistic on all items, then one per iteration
    with pytest.raises(ValueError, match="items in every stratum"):
        paired_bootstrap(lambda draw: 0.0, {"a": 0})


def test_a_paired_test_round_trips_through_json():
    test = PairedTest("mcnemar", 200, 0.51, 0.55, 0.0213, (14, 6))
    assert PairedTest.from_dict(test.to_dict()) == test
    assert test.difference == pytest.approx(0.04)
