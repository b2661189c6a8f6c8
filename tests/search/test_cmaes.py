"""CMA-ES from the `cmaes` package: Sakana's start, unit-cube coordinates, ranks without made-up scores."""

from __future__ import annotations

import numpy as np

from evomerge.search.cmaes import CMAES, injected

from .problems import asked, assert_same_log, best, drive, genome, optimizer, run_behaviour_checks, run_failure_checks, sphere


def test_deterministic_and_in_bounds():
    run_behaviour_checks("cmaes")


def test_failed_evaluations_rank_last():
    run_failure_checks("cmaes")


def test_starts_at_the_centre_with_a_sixth_of_the_range():
    g = genome(experts=4, weight=(0.0, 2.0))
    opt = optimizer("cmaes", g, populationSize=400)
    first = opt.ask(400)[4:]  # after the four task-biased members: CMA's own samples
    assert np.allclose(first.mean(axis=0), 1.0, atol=0.05)  # mean0 0.5 of [0, 2]
    assert np.allclose(first.std(axis=0), 2.0 / 6, rtol=0.1)  # σ₀ = 1/6 of the range


def test_options_move_the_start():
    g = genome(experts=4, weight=(0.0, 2.0))
    first = optimizer("cmaes", g, populationSize=200, cmaes={"mean0": "0.25", "sigma0": "0.05"}).ask(200)[4:]
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


def mean_gap(opt: CMAES, target: np.ndarray) -> float:
    """How far CMA's mean lies from a point, in its unit-cube coordinates."""
    return float(np.linalg.norm(opt.cma.mean - opt.transform.encode(target)))


def test_each_expert_alone_then_the_seeds_are_the_first_candidates_and_the_first_seed_is_the_mean():
    g = genome(experts=4)
    seeds = np.array([[0.5, -0.5, 0.25, 0.0], [-0.75, 0.75, 0.0, 0.5]])
    opt = optimizer("cmaes", g, seeds=seeds)
    first = opt.ask(8)
    assert np.array_equal(first[:4], np.eye(4))  # task-biased: each expert alone
    assert np.array_equal(first[4:6], seeds) and not any(np.array_equal(v, s) for v in first[6:] for s in seeds)
    assert np.allclose(opt.transform.decode(opt.cma.mean), seeds[0])  # Sakana-style: CMA starts at the first seed


def test_both_seeds_are_told_with_their_generation_and_move_the_mean():
    g = genome(experts=4)
    good = np.array([-0.75, 0.75, 0.0, 0.5])
    objective = sphere(good)
    seeded = optimizer("cmaes", g, seeds=np.array([np.zeros(4), good]))
    log = drive(seeded, objective, 1)
    assert np.array_equal(log[0][0][5], good) and log[0][1][5] == 0.0  # evaluated: the best score there is
    assert seeded.cma.generation == 1
    alone = optimizer("cmaes", g, seeds=np.zeros((1, 4)))
    drive(alone, objective, 1)
    # The second seed, best of its generation, pulls the mean further towards it than the samples alone did.
    assert mean_gap(seeded, good) < mean_gap(alone, good)


def test_seeds_beyond_the_population_are_left_out_and_seeding_is_deterministic():
    g = genome(experts=4)
    seeds = np.random.default_rng(0).uniform(-1.0, 1.0, (10, 4))
    objective = sphere(np.full(4, 0.2))
    log = drive(optimizer("cmaes", g, seeds=seeds), objective, 3)
    assert np.array_equal(log[0][0], seeds[:8]) and not any(np.array_equal(v, s) for v in asked(log[1:]) for s in seeds)
    assert_same_log(log, drive(optimizer("cmaes", g, seeds=seeds), objective, 3))


def test_failed_seeds_are_not_asked_again():
    g = genome(experts=4)
    seeds = np.array([[0.5, -0.5, 0.25, 0.0], [-0.75, 0.75, 0.0, 0.5]])
    opt = optimizer("cmaes", g, seeds=seeds)
    drive(opt, lambda x: None, 1)
    again = opt.ask(8)
    assert not any(np.array_equal(v, s) for v in again for s in seeds)


def test_a_far_injected_member_is_told_clipped_to_hansens_length_and_a_near_one_as_it_is():
    """Each expert alone lies ~9.5 σ₀ from the centre of a [0, 1]^10 box: told as it is, the best of them would drag
    the mean and the covariance towards one corner in one update."""
    g = genome(experts=10, weight=(0.0, 1.0))
    opt = optimizer("cmaes", g, populationSize=20)
    far = opt.transform.encode(np.eye(10)[0])
    told = injected(opt.cma, far)
    limit = np.sqrt(10) + 20 / 12
    assert np.isclose(np.linalg.norm(told - opt.cma.mean) * 6, limit)  # in σ₀ = 1/6 units
    along = float((told - opt.cma.mean) @ (far - opt.cma.mean)) / float(np.sum((far - opt.cma.mean) ** 2))
    assert 0 < along < 1 and np.allclose(opt.cma.mean + along * (far - opt.cma.mean), told)  # on the way to it
    near = opt.cma.mean + 0.05
    assert np.array_equal(injected(opt.cma, near), near)
