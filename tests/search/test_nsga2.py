"""NSGA-II from pymoo: a Pareto front of several objectives; failures are infeasible points."""

from __future__ import annotations

import numpy as np
import pytest

from evomerge.search.nsga2 import NSGA2

from .problems import asked, drive, genome, optimizer, run_behaviour_checks, run_failure_checks


def trade_off(x: np.ndarray) -> tuple[float, float]:
    """Two experts pull in opposite directions: no single merge is best at both."""
    return -float(np.sum((x - 0.5) ** 2)), -float(np.sum((x + 0.5) ** 2))


def test_flags_itself_multi_objective():
    assert NSGA2.entry.multi_objective and isinstance(optimizer("nsga2", n_objectives=2), NSGA2)


def test_needs_two_objectives():
    with pytest.raises(ValueError, match="at least 2 objectives"):
        optimizer("nsga2", n_objectives=1)


def test_deterministic_and_in_bounds():
    run_behaviour_checks("nsga2", n_objectives=2)


def test_failed_evaluations_are_infeasible():
    run_failure_checks("nsga2", n_objectives=2)


def test_finds_a_spread_pareto_front():
    g = genome(experts=3)
    opt = optimizer("nsga2", g, n_objectives=2, populationSize=20)
    log = drive(opt, trade_off, 15)
    front = opt.pareto_front()
    assert len(front) >= 10
    points = np.array([trade_off(x) for x in front])
    for p in points:  # non-dominated among themselves
        assert not any(np.all(q >= p) and np.any(q > p) for q in points)
    # close to the segment between the two optima (the true front), and spread along it
    off_segment = lambda xs: np.linalg.norm(xs - xs.mean(axis=1, keepdims=True), axis=1).mean()  # noqa: E731
    assert off_segment(front) < 0.3 * off_segment(log[0][0])
    assert front.mean(axis=1).min() < -0.3 and front.mean(axis=1).max() > 0.3
    drawn = np.array([trade_off(x) for x in log[0][0][4:]])  # after each expert alone and the uniform merge (x = 0,
    assert points.sum(axis=1).max() > drawn.sum(axis=1).max()  # already the sum's optimum): the random draws
    assert len(asked(log)) == 300


def test_the_first_population_holds_each_expert_alone_and_the_uniform_merge_then_the_seeds():
    g = genome(experts=3, weight=(0.0, 1.0))
    seed = np.array([[0.1, 0.2, 0.3]])
    first = optimizer("nsga2", g, n_objectives=2, seeds=seed).ask(8)
    assert np.array_equal(first[:5], np.vstack([np.eye(3), np.full((1, 3), 0.5), seed]))
