"""The GA recipe: softmax weights per layer group, elitism, crossover and mutation, steady-state async."""

from __future__ import annotations

import numpy as np

from evomerge.search.ga import GeneticAlgorithm
from evomerge.search.genome import BoxTransform

from .problems import asked, best, drive, genome, optimizer, run_behaviour_checks, run_failure_checks, sphere

BOX = {"softmaxWeights": False}


def test_deterministic_and_in_bounds():
    run_behaviour_checks("ga")
    run_behaviour_checks("ga", ga={**BOX, "crossover": "blend", "selection": "rank"})


def test_failed_evaluations_never_breed():
    run_failure_checks("ga", ga=BOX)
    opt = optimizer("ga", ga=BOX)
    vectors = opt.ask(8)
    opt.tell(vectors, [None if i % 2 else float(i) for i in range(8)])
    assert [m.fitness for m in opt.parent_pool()] == [6.0, 4.0]  # ⌈0.25·8⌉ successes; the failures are "better"


def test_softmax_weights_are_positive_and_sum_to_one_per_group():
    g = genome(experts=3, groups=("embed", "blocks0", "head"), weight=(0.0, 1.0), method="linear")
    log = drive(optimizer("ga", g), sphere(np.full(g.dim, 0.2)), 4)  # linear mixes models: the simplex by default
    index = g.param_index("weight")
    weights = asked(log)[:, index]  # (candidates, groups, experts)
    assert np.all(weights > 0) and np.allclose(weights.sum(axis=-1), 1.0)
    first = log[0][0][:, index]
    assert np.all(first[np.arange(3), :, np.arange(3)] > 0.999)  # member k: expert k dominant in every group
    assert np.allclose(first[3], 1 / 3)  # then the uniform merge


def test_task_vector_weights_default_to_a_box_that_reaches_sums_above_one():
    """Task-arithmetic optima sum above one (the zoo's best to 2.25): the default GA must be able to go there."""
    g = genome(experts=4, groups=("blocks0", "blocks1"), weight=(0.0, 1.5))
    assert isinstance(optimizer("ga", g).transform, BoxTransform)
    target = np.full(g.dim, 0.6)  # 2.4 per group
    log = drive(optimizer("ga", g, populationSize=20), sphere(target), 8)
    found = asked(log)[int(np.argmax([f for _, fs in log for f in fs]))]
    assert np.all(found[g.param_index("weight")].sum(axis=-1) > 1.5)
    simplex = drive(optimizer("ga", g, populationSize=20, ga={"softmaxWeights": True}), sphere(target), 8)
    assert np.allclose(asked(simplex)[:, g.param_index("weight")].sum(axis=-1), 1.0)  # set explicitly, it still holds
    assert best(log) > best(simplex) + 0.5  # the simplex can come no nearer than 0.25 per weight (a gap of 0.98)


def test_elites_survive_without_being_evaluated_again():
    g = genome(experts=4)
    opt = optimizer("ga", g, ga={**BOX, "elitism": 2})
    objective = sphere(np.array([0.1, 0.2, 0.3, 0.4]))
    first = drive(opt, objective, 1)
    champions = sorted(first[0][1], reverse=True)[:2]
    second = opt.ask(8)
    opt.tell(second, [-100.0] * 8)  # children all worse: the two champions must stay
    assert [m.fitness for m in opt.population[:2]] == champions
    assert not any(np.array_equal(c, v) for c in second for v in first[0][0][np.argsort(first[0][1])[-2:]])


def test_children_mutate_in_small_steps():
    opt = optimizer("ga", genome(experts=4), ga={**BOX, "crossoverRate": 0.0, "mutationSigma": 0.05}, populationSize=20)
    drive(opt, sphere(np.zeros(4)), 1)
    pool = np.stack([opt.genome.from_unit(m.z) for m in opt.parent_pool()])
    children = opt.ask(20)
    nearest = np.min(np.abs(children[:, None, :] - pool[None, :, :]).max(axis=-1), axis=1)
    assert np.all(nearest < 0.05 * 2 * 5)  # within 5σ (σ = 0.05 of the range [-1, 1]) of some parent
    assert np.all(nearest > 0)  # and every one of them mutated


def test_makes_progress_and_beats_random_search_at_equal_budget():
    g = genome(experts=6)
    objective = sphere(np.array([0.3, -0.2, 0.5, 0.1, 0.0, 0.25]))
    ga = drive(optimizer("ga", g, populationSize=12, ga=BOX), objective, 8)
    random = drive(optimizer("random", g, populationSize=12), objective, 8)
    assert best(ga) > max(ga[0][1]) + 0.1 and best(ga) > best(random)


def test_steady_state_breeds_from_the_best_results_so_far():
    opt = optimizer("ga", mode="async", ga=BOX)
    objective = sphere(np.zeros(4))
    initial = np.concatenate([opt.ask(1) for _ in range(8)])
    assert opt.ask(1).shape[0] == 0  # nothing back yet: no parents
    opt.tell(initial[:3], [objective(v) for v in initial[:3]])
    child = opt.ask(1)
    assert child.shape == (1, 4)
    opt.tell(initial[3:], [objective(v) for v in initial[3:]])
    assert len(opt.population) == 8
    opt.tell(child, [10.0])
    assert opt.population[0].fitness == 10.0 and len(opt.population) == 8


def test_ga_is_registered():
    assert isinstance(optimizer("ga"), GeneticAlgorithm)
