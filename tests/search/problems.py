"""Small genomes, specs and objectives shared by the optimizer tests."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from evomerge.search.genome import Genome
from evomerge.search.optimizer import Fitness, Optimizer, make_optimizer
from evomerge.spec.merge_search import SearchSpec

Objective = Callable[[np.ndarray], Fitness]


def genome(
    experts: int = 4,
    groups: tuple[str, ...] = ("all",),
    evolve: Sequence[str] = ("weight",),
    weight: tuple[float, float] = (-1.0, 1.0),
    method: str = "task_arithmetic",
) -> Genome:
    return Genome.build(
        method, "file:///base", [(f"e{i}", f"file:///e{i}") for i in range(experts)], groups, list(evolve),
        {"weight": weight, "density": (0.2, 0.9), "t": (0.0, 1.0)}, {},
    )


def search(algorithm: str, **fields) -> SearchSpec:
    """A SearchSpec with small populations and, for EvoGM, small generators (the tests check behaviour, not scale)."""
    base = {"algorithm": algorithm, "populationSize": 8, "maxGenerations": 4, "seed": 3,
            "evogm": {"hiddenDims": [16, 16], "trainingSteps": 20, "learningRate": 0.003}}
    for key, value in fields.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return SearchSpec.model_validate(base)


def optimizer(algorithm: str, g: Genome | None = None, n_objectives: int = 1, seeds=None, **fields) -> Optimizer:
    return make_optimizer(g or genome(), search(algorithm, **fields), n_objectives, seeds)


def sphere(target: np.ndarray) -> Objective:
    return lambda x: -float(np.sum((x - target) ** 2))


def drive(opt: Optimizer, objective: Objective, generations: int, batch: int | None = None) -> list[tuple[np.ndarray, list[Fitness]]]:
    """Generational ask/tell; returns every (asked vectors, their fitness) in order."""
    size = batch or opt.search.population_size
    log = []
    for _ in range(generations):
        vectors = opt.ask(size)
        fitness = [objective(v) for v in vectors]
        opt.tell(vectors, fitness)
        log.append((vectors, fitness))
    return log


def asked(log: list[tuple[np.ndarray, list[Fitness]]]) -> np.ndarray:
    return np.concatenate([v for v, _ in log])


def best(log: list[tuple[np.ndarray, list[Fitness]]]) -> float:
    return max(f for _, fs in log for f in fs if f is not None)  # type: ignore[type-var]


def assert_same_log(a, b) -> None:
    assert len(a) == len(b)
    for (va, fa), (vb, fb) in zip(a, b):
        assert np.array_equal(va, vb) and fa == fb


def scored(objective: Objective, n_objectives: int) -> Objective:
    """One objective, or for multi-objective optimizers a trade-off: the same, and the same less the last gene."""
    if n_objectives == 1:
        return objective
    return lambda x: None if objective(x) is None else (objective(x), objective(x) - float(x[-1]))  # type: ignore[return-value,operator]


def run_behaviour_checks(algorithm: str, n_objectives: int = 1, **fields) -> None:
    """Same spec, seed and results → the same candidates; another seed → others; every candidate in bounds."""
    g = genome(experts=3, groups=("embed", "blocks0", "head"), evolve=("weight", "density"), method="ties",
               weight=(-0.5, 1.5))
    objective = scored(sphere(np.linspace(0.0, 0.8, g.dim)), n_objectives)
    first = drive(optimizer(algorithm, g, n_objectives, **fields), objective, 5)
    again = drive(optimizer(algorithm, g, n_objectives, **fields), objective, 5)
    assert_same_log(first, again)
    other = drive(optimizer(algorithm, g, n_objectives, seed=4, **fields), objective, 5)
    assert not np.array_equal(asked(first), asked(other))
    everything = asked(first)
    assert everything.shape == (40, g.dim)
    assert np.all(everything >= g.lower) and np.all(everything <= g.upper)


def run_failure_checks(algorithm: str, n_objectives: int = 1, **fields) -> None:
    """Failed evaluations (None) neither crash an optimizer nor pass for scores.

    Successes score below zero with their best at x[0] = -0.5, and every candidate with x[0] > 0.3 fails: an
    optimizer that took a failure for a score (say 0) would be drawn into that region; a correct one leaves
    it for the successes' optimum. A stretch where every evaluation fails must not stop it either.
    """
    g = genome(experts=4)
    centre = np.array([-0.5, 0.0, 0.0, 0.0])
    base = lambda x: None if x[0] > 0.3 else -10.0 - float(np.sum((x - centre) ** 2))  # noqa: E731
    log = drive(optimizer(algorithm, g, n_objectives, **fields), scored(base, n_objectives), 6)
    first, last = log[0][0][:, 0], np.concatenate([v for v, _ in log[-2:]])[:, 0]
    assert np.mean(last > 0.3) <= np.mean(first > 0.3) and last.mean() < 0.0

    opt = optimizer(algorithm, g, n_objectives, **fields)
    dead = drive(opt, lambda x: None, 3)
    alive = drive(opt, scored(sphere(np.zeros(g.dim)), n_objectives), 3)
    for vectors in (asked(dead), asked(alive)):
        assert vectors.shape == (24, g.dim) and np.all(np.abs(vectors) <= 1.0)
