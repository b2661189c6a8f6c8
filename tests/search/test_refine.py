"""The local refinement: small steps around an incumbent that move only to something better."""

from __future__ import annotations

import numpy as np

from evomerge.search.refine import FAILURE, SUCCESS, Refiner

from .problems import genome, search, sphere


def refiner(start, fitness, **refine):
    g = genome(experts=4, weight=(0.0, 1.0))
    return Refiner(g, search("ga", refine={"evaluations": 10, **refine}), np.asarray(start, dtype=float), fitness)


def test_neighbours_lie_near_the_incumbent_within_the_bounds():
    r = refiner(np.full(4, 0.5), -1.0, stepSize="0.05")
    rows = r.ask(200)
    assert np.all(rows >= 0.0) and np.all(rows <= 1.0)
    assert np.allclose(rows.std(axis=0), 0.05, rtol=0.2) and np.allclose(rows.mean(axis=0), 0.5, atol=0.02)


def test_it_moves_only_to_a_better_neighbour_and_adapts_its_step():
    target = np.array([0.6, 0.4, 0.55, 0.45])
    objective = sphere(target)
    start = np.full(4, 0.5)
    r = refiner(start, objective(start))
    rows = r.ask(3)
    r.tell(rows, [objective(x) - 10.0 for x in rows])  # all worse: stay, smaller steps
    assert np.array_equal(r.best, start) and np.isclose(r.sigma, 0.05 * FAILURE)
    rows = r.ask(3)
    r.tell(rows, [None, objective(rows[1]) + 10.0, None])  # one better (failures are no success): move there
    assert np.array_equal(r.best, rows[1]) and np.isclose(r.sigma, 0.05 * FAILURE * SUCCESS)


def test_steps_close_in_on_a_nearby_optimum_and_replay_identically():
    target = np.array([0.6, 0.4, 0.55, 0.45])
    objective = sphere(target)

    def walk():
        r, log = refiner(np.full(4, 0.5), objective(np.full(4, 0.5))), []
        for _ in range(40):
            rows = r.ask(1)
            r.tell(rows, [objective(rows[0])])
            log.append(rows)
        return r, np.concatenate(log)

    r, log = walk()
    assert r.fitness > objective(np.full(4, 0.5)) / 4  # the (1+1)-ES recipe: most of the way in 40 steps
    assert np.array_equal(log, walk()[1])
