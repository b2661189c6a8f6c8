"""The asynchronous mode: no generation barrier, at most `parallelism` in flight, and exact replay."""

from __future__ import annotations

import numpy as np
import pytest

from evomerge.runner.loop import SearchRunner
from evomerge.search.optimizer import make_optimizer

from .fakes import ClockExecutor, MemoryHistory, comparable
from .synthetic_search import POPULATION, genome, spec


def score(cid, recipe):
    """Deterministic per recipe; about one in seven fails."""
    x = genome().encode(recipe)
    if int(recipe.digest(), 16) % 7 == 0:
        return None
    return {"synthetic/near": -float(np.sum((x - 0.2) ** 2))}


def run(search_spec, history=None, duration=lambda cid: 1.0, workers=1, seeds=None):
    g = genome()
    executor = ClockExecutor(score, duration, workers)
    runner = SearchRunner(search_spec, g, lambda: make_optimizer(g, search_spec.search, 1, seeds), executor,
                          history if history is not None else MemoryHistory(), clock=executor.clock)
    return runner.run(), executor


def position(history, kind, cid):
    return next(i for i, e in enumerate(history.list) if e["type"] == kind and cid in e.get("ids", [e.get("id")]))


@pytest.mark.parametrize("algorithm", ["evogm", "ga", "random"])
def test_new_candidates_start_while_a_straggler_is_still_running(algorithm):
    slow = lambda cid: 30.0 if cid == "c000001" else 1.0  # noqa: E731
    history = MemoryHistory()
    outcome, executor = run(spec(algorithm, "async"), history, slow, workers=3)
    straggler = position(history, "result", "c000001")
    next_generation = [c.id for c in outcome.candidates if int(c.id[1:]) >= POPULATION]
    assert position(history, "ask", next_generation[0]) < straggler  # no barrier at the generation's end
    assert executor.most_in_flight <= 3
    generational, clocked = run(spec(algorithm, "generational"), MemoryHistory(), slow, workers=3)
    assert len(generational.candidates) == len(outcome.candidates)
    assert executor.now < clocked.now  # the same number of evaluations in less (simulated) time


def test_a_finished_async_history_replays_without_evaluating_anything():
    history = MemoryHistory()
    uneven = lambda cid: 1.0 + (int(cid[1:]) * 7919 % 5)  # noqa: E731
    first, _ = run(spec("evogm", "async"), history, uneven, workers=3)
    recorded = list(history.list)
    again, executor = run(spec("evogm", "async"), history, uneven, workers=3)
    assert not executor.submitted and history.list == recorded
    assert again.best.id == first.best.id and again.summaries == first.summaries


@pytest.mark.parametrize("algorithm,mode,every", [
    ("ga", "async", 1), ("random", "async", 1), ("ga", "generational", 1), ("evogm", "async", 23),
])
def test_resuming_from_any_point_of_the_history_gives_the_same_search(algorithm, mode, every):
    whole = MemoryHistory()
    run(spec(algorithm, mode), whole)
    for cut in range(0, len(whole.list), every):
        history = MemoryHistory(whole.list[:cut])
        run(spec(algorithm, mode), history)
        assert comparable(history.list) == comparable(whole.list), f"resumed after event {cut} of {len(whole.list)}"


def test_a_repeated_recipe_is_scored_once():
    g = genome()
    twice = np.linspace(-0.5, 0.5, g.dim)
    seeds = np.stack([twice, np.zeros(g.dim), twice])
    history = MemoryHistory()
    s = spec("random", "async", maxEvaluations=3)
    one_at_a_time = s.model_copy(update={"evaluation": s.evaluation.model_copy(update={"parallelism": 1})})
    outcome, executor = run(one_at_a_time, history, seeds=seeds)
    assert executor.submitted == ["c000000", "c000001"]
    assert [e["cached"] for e in history.list if e["type"] == "result"] == [False, False, True]
    assert outcome.candidates[2].scores == outcome.candidates[0].scores


def test_in_flight_keeps_every_evaluation_pods_batch_full():
    """The controller asks for parallelism × candidates per pod in flight, so that async mode starts each pod
    (and its server) with a full batch, not one candidate per slot as it frees."""
    g, search_spec = genome(), spec("random", "async")
    executor = ClockExecutor(score, workers=12)
    runner = SearchRunner(search_spec, g, lambda: make_optimizer(g, search_spec.search, 1), executor, MemoryHistory(),
                          clock=executor.clock, in_flight=3 * search_spec.evaluation.parallelism)
    runner.run()
    assert executor.most_in_flight == 3 * search_spec.evaluation.parallelism
    _, default = run(spec("random", "async"), workers=12)
    assert default.most_in_flight == search_spec.evaluation.parallelism
