"""CMA-ES from the `cmaes` package: Sakana's start, unit-cube coordinates, ranks without made-up scores."""

from __future__ import annotations

import numpy as np

from evomerge.search.cmaes import CMAES

from .problems import best, drive, genome, optimizer, run_behaviour_checks, run_failure_checks, sphere


def test_deterministic_and_in_bounds():
    run_behaviour_checks("cmaes")


def test_failed_evaluations_rank_last():
    run_failure_checks("cmaes")


def test_starts_at_the_centre_with_a_sixth_of_the_range():
    g = genome(experts=4, weight=(0.0, 2.0))
    opt = optimizer("cmaes", g, populationSize=400)
    first = opt.ask(400)
    assert np.allclose(first.mean(axis=0), 1.0, atol=0.05)  # mean0 0.5 of [0, 2]
    assert np.allclose(first.std(axis=0), 2.0 / 6, rtol=0.1)  # σ₀ = 1/6 of the range


def test_options_move_the_start():
    g = genome(experts=4, weight=(0.0, 2.0))
    first = optimizer("cmaes", g, populationSize=200, cmaes={"mean0": "0.25", "sigma0": "0.05"}).ask(200)
    assert np.allclose(first.mean(axis=0), 0.5, atol=0.03) and np.allclose(first.std(axis=0), 0.1, rtol=0.15)


def test_a_generation_that_failed_entirely_is_sampled_again():
    opt = optimizer("cmaes")
    drive(opt, lambda x: None, 2)
    assert opt.cma.generation == 0  # nothing learnt from failures
    drive(opt, sphere(np.zeros(4)), 1)
    assert opt.cma.generation == 1


def test_makes_progress_and_beats_random_search_at_equal_budget():
    g = genome(experts=6)
    objective = sphere(np.array([0.3, -0.2, 0.5, 0.1, 0.0, 0.25]))
    cma = drive(optimizer("cmaes", g, populationSize=12), objective, 8)
    random = drive(optimizer("random", g, populationSize=12), objective, 8)
    assert best(cma) > max(cma[0][1]) + 0.1 and best(cma) > best(random)


def test_cmaes_is_registered():
    assert isinstance(optimizer("cmaes"), CMAES)
