"""The local executor: one evaluation at a time; with lookahead the scorer is told which candidate comes next."""

from __future__ import annotations

from evomerge.executors.local import LocalExecutor
from evomerge.merge.recipe import ExpertWeights, MergeRecipe


def recipe(weight: float) -> MergeRecipe:
    return MergeRecipe("linear", None, (ExpertWeights("a", "file:///m/a", {"weight": {"all": weight}}),), ("all",), {})


def test_with_lookahead_each_candidate_is_scored_knowing_the_next_queued_one():
    told: list[tuple[float, float | None]] = []

    def score(r: MergeRecipe, then: MergeRecipe | None = None) -> dict[str, float]:
        told.append((r.experts[0].params["weight"]["all"], then.experts[0].params["weight"]["all"] if then else None))
        return {"k": 1.0}

    executor = LocalExecutor(lambda: score, lookahead=True)
    for i, w in enumerate((0.1, 0.2, 0.3)):
        executor.submit(f"c{i}", recipe(w))
    results = [r for _ in range(3) for r in executor.wait()]

    assert [r.candidate for r in results] == ["c0", "c1", "c2"] and all(r.ok for r in results)
    assert told == [(0.1, 0.2), (0.2, 0.3), (0.3, None)]


def test_without_lookahead_the_scorer_takes_the_recipe_alone():
    executor = LocalExecutor(lambda: lambda r: {"k": r.experts[0].params["weight"]["all"]})
    executor.submit("c0", recipe(0.5))
    executor.submit("c1", recipe(0.7))
    assert [r.scores for r in executor.wait()] == [{"k": 0.5}]
