"""Per-item results: what lm-eval logged for each document (`log_samples`), and two models compared on them.

An aggregate score hides which items a model got right; two models' aggregates cannot say whether their
difference is noise. `TaskSuite.run_items` keeps, per objective, lm-eval's own per-sample value of the
objective's metric (1/0 for acc or exact_match, a (log-likelihood, bytes) pair for bits_per_byte, …) with
the name of the aggregation lm-eval reduces them by. `compare_items` then tests a candidate against a
baseline on the weighted objective that `scoring.fitness` defines — the statistic recomputed from the
items by lm-eval's own aggregations, so it is the objective the search optimises, not a look-alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..spec.merge_search import Objective
from .paired import BOOTSTRAP_ITERATIONS, PairedTest, mcnemar_exact, paired_bootstrap
from .scoring import fitness

ITEMS_FILE = "evomerge_items.json"  # beside an exported checkpoint: both models' per-item results of the gate


class ItemsError(ValueError):
    """Per-item results that cannot be compared (no items logged, or none in common)."""


@dataclass(frozen=True)
class ObjectiveItems:
    """One objective's per-item values, keyed "leaf task:doc_id", and how lm-eval aggregates them."""

    aggregation: str  # a name in lm-eval's aggregation registry: mean, bits_per_byte, perplexity, …
    values: dict[str, Any]

    def aggregate(self, ids: Sequence[str]) -> float:
        return float(_aggregation(self.aggregation)([self.values[i] for i in ids]))

    @property
    def pass_fail(self) -> bool:
        """Every value is 0 or 1 and they are averaged: the items McNemar's test is for."""
        return self.aggregation == "mean" and all(
            isinstance(v, (bool, int, float)) and v in (0, 1) for v in self.values.values())


ItemScores = dict[str, ObjectiveItems]  # objective key ("task/metric") → its items


def items_to_json(items: ItemScores) -> dict[str, Any]:
    return {key: {"aggregation": o.aggregation, "values": o.values} for key, o in sorted(items.items())}


def items_from_json(data: Mapping[str, Any]) -> ItemScores:
    return {key: ObjectiveItems(str(o["aggregation"]), dict(o["values"])) for key, o in data.items()}


def compare_items(objectives: Sequence[Objective], baseline: ItemScores, candidate: ItemScores, *, seed: int = 0,
                  iterations: int = BOOTSTRAP_ITERATIONS) -> PairedTest:
    """The candidate against the baseline on the weighted objective of `objectives`, item by item.

    McNemar's exact test when every weighted objective is pass/fail and weighs each of its items alike
    (weight / items equal across objectives: the weighted objective is then the share of items passed);
    otherwise a paired bootstrap, stratified by task, of the weighted objective itself.
    """
    ids = {o.key: _shared_ids(o, baseline, candidate) for o in objectives}
    weighted = [o for o in objectives if o.weight > 0] or list(objectives)
    full = {o.key: ids[o.key] for o in objectives}
    before = fitness(objectives, {o.key: baseline[o.key].aggregate(full[o.key]) for o in objectives})
    after = fitness(objectives, {o.key: candidate[o.key].aggregate(full[o.key]) for o in objectives})
    items = sum(len(ids[o.key]) for o in weighted)
    if _pooled_pass_fail(weighted, baseline, candidate, ids):
        good_before = [_good(o, baseline[o.key].values[i]) for o in weighted for i in ids[o.key]]
        good_after = [_good(o, candidate[o.key].values[i]) for o in weighted for i in ids[o.key]]
        p_value, discordant = mcnemar_exact(good_before, good_after)
        return PairedTest("mcnemar", items, before, after, p_value, discordant)
    strata: dict[str, list[str]] = {}
    stratum_of: dict[str, str] = {}
    for o in objectives:  # objectives of one task share its items, so they are drawn together
        name = o.task if strata.get(o.task, ids[o.key]) == ids[o.key] else o.key
        strata[name], stratum_of[o.key] = ids[o.key], name

    def difference(draw: Mapping[str, Sequence[int]]) -> float:
        chosen = {o.key: [strata[stratum_of[o.key]][i] for i in draw[stratum_of[o.key]]] for o in objectives}
        return (fitness(objectives, {k: candidate[k].aggregate(v) for k, v in chosen.items()})
                - fitness(objectives, {k: baseline[k].aggregate(v) for k, v in chosen.items()}))

    _, p_value = paired_bootstrap(difference, {name: len(v) for name, v in strata.items()}, iterations, seed)
    return PairedTest("bootstrap", items, before, after, p_value)


def compare_each(objectives: Sequence[Objective], baseline: ItemScores, candidate: ItemScores, *,
                 seed: int = 0) -> dict[str, PairedTest]:
    """Each objective on its own (its value normalised as the search weighs it: higher is better)."""
    return {o.key: compare_items([o], baseline, candidate, seed=seed) for o in objectives}


def _shared_ids(objective: Objective, baseline: ItemScores, candidate: ItemScores) -> list[str]:
    for side, items in (("baseline", baseline), ("candidate", candidate)):
        if objective.key not in items or not items[objective.key].values:
            raise ItemsError(f"objective {objective.key}: the {side} has no per-item results")
    shared = sorted(set(baseline[objective.key].values) & set(candidate[objective.key].values))
    if not shared:
        raise ItemsError(f"objective {objective.key}: the two models were scored on different items")
    return shared


def _pooled_pass_fail(weighted: Sequence[Objective], baseline: ItemScores, candidate: ItemScores,
                      ids: Mapping[str, list[str]]) -> bool:
    if not all(baseline[o.key].pass_fail and candidate[o.key].pass_fail for o in weighted):
        return False
    per_item = [o.weight / len(ids[o.key]) for o in weighted]
    return all(math.isclose(w, per_item[0], rel_tol=1e-9) for w in per_item)


def _good(objective: Objective, value: Any) -> bool:
    return bool(value) if objective.direction == "maximize" else not value


def _aggregation(name: str) -> Any:
    from lm_eval.api.registry import get_aggregation

    function = get_aggregation(name)
    if function is None:
        raise ItemsError(f"lm-eval knows no aggregation {name!r}")
    return function
