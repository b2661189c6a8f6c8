"""When a search stops: no improvement above minDelta for `patience` generations, or the evaluation budget."""

from __future__ import annotations

import pytest

from evomerge.runner.loop import SearchRunner
from evomerge.search.optimizer import make_optimizer

from .fakes import ClockExecutor, MemoryHistory
from .synthetic_search import POPULATION, genome, spec


def runner(search_spec, score, history=None, workers=1):
    g = genome()
    executor = ClockExecutor(score, workers=workers)
    return SearchRunner(search_spec, g, lambda: make_optimizer(g, search_spec.search, 1), executor,
                        history or MemoryHistory(), clock=executor.clock), executor


def by_generation(step: float):
    """Each generation scores `step` better than the one before (the generation read from the candidate id)."""
    return lambda cid, recipe: {"synthetic/near": step * (int(cid[1:]) // POPULATION)}


@pytest.mark.parametrize("mode", ["generational", "async"])
def test_stops_after_patience_generations_without_improvement(mode):
    s = spec("ga", mode, maxGenerations=50, earlyStopping={"patience": 3})
    r, executor = runner(s, lambda cid, recipe: {"synthetic/near": 0.5}, workers=3)
    outcome = r.run()
    assert outcome.stop_reason == "no improvement above 0.0 for 3 generations"
    assert len(outcome.summaries) == 4  # the first generation sets the best; three more without improvement
    asked = len(outcome.candidates)
    assert all(c.scores is not None for c in outcome.candidates)  # what was in flight is finished and told
    assert 4 * POPULATION <= asked <= 4 * POPULATION + (3 if mode == "async" else 0)


@pytest.mark.parametrize("mode", ["generational", "async"])
def test_improvements_below_min_delta_do_not_count(mode):
    small = spec("random", mode, maxGenerations=12, earlyStopping={"patience": 2, "minDelta": "0.01"})
    outcome = runner(small, by_generation(0.004))[0].run()
    assert outcome.stop_reason.startswith("no improvement above 0.01 for 2 generations")
    # generation 0 sets the bar at 0; 0.004 and 0.008 are improvements, but not above 0 + minDelta
    assert len(outcome.summaries) == 3
    # async: the three candidates in flight at the stop (of generation 3) still finish
    assert outcome.best.fitness == (0.008 if mode == "generational" else 0.012)
    enough = spec("random", mode, maxGenerations=12, earlyStopping={"patience": 2, "minDelta": "0.003"})
    assert runner(enough, by_generation(0.004))[0].run().stop_reason == "maxGenerations reached"


@pytest.mark.parametrize("mode", ["generational", "async"])
def test_max_evaluations_is_a_hard_budget(mode):
    s = spec("ga", mode, maxGenerations=50, maxEvaluations=20)
    r, executor = runner(s, lambda cid, recipe: {"synthetic/near": -int(cid[1:])}, workers=3)
    outcome = r.run()
    assert outcome.stop_reason == "maxEvaluations reached"
    assert len(outcome.candidates) == 20 and outcome.evaluations == 20
    assert len(executor.submitted) <= 20


def test_failed_generations_count_as_no_improvement():
    s = spec("random", "generational", maxGenerations=20, earlyStopping={"patience": 2})
    score = lambda cid, recipe: None if int(cid[1:]) >= POPULATION else {"synthetic/near": 1.0}  # noqa: E731
    outcome = runner(s, score)[0].run()
    assert outcome.stop_reason.startswith("no improvement") and len(outcome.summaries) == 3
    assert outcome.best.fitness == 1.0 and outcome.failed == 2 * POPULATION


@pytest.mark.parametrize("mode", ["generational", "async"])
def test_a_stopped_search_stays_stopped_when_run_again(mode):
    s = spec("ga", mode, maxGenerations=50, earlyStopping={"patience": 2})
    history = MemoryHistory()
    first = runner(s, lambda cid, recipe: {"synthetic/near": 0.5}, history)[0].run()
    recorded = len(history.list)
    again, executor = runner(s, lambda cid, recipe: {"synthetic/near": 0.5}, history)
    outcome = again.run()
    assert outcome.stop_reason == first.stop_reason and len(history.list) == recorded and not executor.submitted
