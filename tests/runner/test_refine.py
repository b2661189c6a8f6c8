"""search.refine: the search proper stops short of the budget, the refinement spends the rest around its best, and
a search killed anywhere in it resumes exactly."""

from __future__ import annotations

import pytest

from evomerge.catalogue.contracts import parse_events

from .fakes import MemoryHistory, comparable
from .synthetic_search import POPULATION, spec
from .test_async import run

REFINE = {"evaluations": 7}
BUDGET = POPULATION * 6  # the synthetic search's maxGenerations for the GA


@pytest.mark.parametrize("mode", ["generational", "async"])
def test_the_refinement_spends_its_evaluations_inside_the_budget_around_the_best(mode):
    history = MemoryHistory()
    outcome, _ = run(spec("ga", mode, refine=REFINE), history, workers=3)
    asks = [e for e in parse_events(history.list) if e.__class__.__name__ == "Ask"]
    searched = sum(len(a.ids) for a in asks if not a.refine)
    refined = [cid for a in asks if a.refine for cid in a.ids]
    assert searched == BUDGET - 7 and len(refined) == 7 and len(outcome.candidates) == BUDGET
    assert all(len(a.ids) <= 3 for a in asks if a.refine)  # steps of evaluation.parallelism
    assert outcome.stop_reason == f"search budget reached ({BUDGET - 7} evaluations; 7 kept for search.refine)"
    search_best = max((c for c in outcome.candidates if not c.refine and c.fitness is not None), key=lambda c: c.fitness)
    assert outcome.best.fitness >= search_best.fitness
    assert sum(c.refine for c in outcome.candidates) == 7


def test_with_max_evaluations_the_refinement_comes_out_of_them():
    outcome, _ = run(spec("cmaes", "generational", maxEvaluations=20, refine=REFINE))
    assert len(outcome.candidates) == 20 and sum(c.refine for c in outcome.candidates) == 7


@pytest.mark.parametrize("mode", ["generational", "async"])
def test_resuming_from_any_point_of_the_refinement_gives_the_same_search(mode):
    whole = MemoryHistory()
    run(spec("ga", mode, refine=REFINE), whole, workers=3)
    first_refine = next(i for i, e in enumerate(whole.list) if e.get("refine"))
    for cut in range(first_refine - 2, len(whole.list)):
        history = MemoryHistory(whole.list[:cut])
        run(spec("ga", mode, refine=REFINE), history, workers=3)
        assert comparable(history.list) == comparable(whole.list), f"resumed after event {cut} of {len(whole.list)}"


def test_a_history_with_refinement_steps_does_not_replay_under_a_spec_without_refine():
    from evomerge.runner.loop import HistoryMismatch

    whole = MemoryHistory()
    run(spec("ga", "generational", refine=REFINE), whole)
    with pytest.raises(HistoryMismatch, match="search.refine"):
        run(spec("ga", "generational"), MemoryHistory(whole.list))
