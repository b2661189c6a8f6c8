"""Sample efficiency of the optimizers on synthetic merge landscapes with a known optimum.

Each problem scores task-arithmetic coefficients in [-1, 1]^d (EvoGM's search space) and peaks at 0 at a hidden
optimum x* ∈ [0, 0.6]^d — positive coefficients of about 0.3, like the task-arithmetic optima of merges. Every
optimizer runs through the real SearchRunner (score cache and budget included) with populationSize 20 and the
spec defaults (GA as a box, since the softmax recipe cannot leave the simplex); EvoGM uses the paper's rounds
of 1 + 3 iterations, so its first 160 evaluations are exactly the paper's R = 2, T = 3 run. "evogm+jitter" is
EvoGM with `evogm.jitter: 0.15` (the GA's mutation size relative to the range), the mitigation of reference
§9.13 for proposals that collapse onto the winners' mean. Random search gets 10× the budget; the table shows
the evaluations each optimizer needs to reach random search's best, and the gap to the optimum at equal budgets.

    .venv/bin/python benchmarks/optimizers.py               # 5 seeds, about 3 minutes of CPU
    .venv/bin/python benchmarks/optimizers.py --seeds 2 --cap 320
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from evomerge.executors.base import EvalResult
from evomerge.runner.loop import SearchRunner
from evomerge.search.genome import Genome
from evomerge.search.optimizer import make_optimizer
from evomerge.spec.merge_search import MergeSearchSpec

POPULATION = 20
ITERATIONS = 3  # EvoGM iterations per round (paper default), so maxGenerations = 4
RANDOM_FACTOR = 10
JITTER = 0.15
VARIANTS = {  # row name → (algorithm, search-spec overrides)
    "evogm": ("evogm", {}),
    "evogm+jitter": ("evogm", {"evogm": {"jitter": JITTER}}),
    "cmaes": ("cmaes", {}),
    "ga": ("ga", {"ga": {"softmaxWeights": False}}),
    "random": ("random", {}),
}


@dataclass(frozen=True)
class Problem:
    name: str
    experts: int
    groups: int
    build: Callable[[np.random.Generator, int], Callable[[np.ndarray], float]]

    @property
    def dim(self) -> int:
        return self.experts * self.groups


def _rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _optimum(rng: np.random.Generator, d: int) -> np.ndarray:
    return rng.uniform(0.0, 0.6, d)


def smooth(rng: np.random.Generator, d: int) -> Callable[[np.ndarray], float]:
    """A rotated ellipsoid (condition 10): one smooth basin, coefficients mildly coupled."""
    x_star, rot = _optimum(rng, d), _rotation(rng, d)
    a = rot @ np.diag(np.logspace(0, 1, d)) @ rot.T
    return lambda x: -float((x - x_star) @ a @ (x - x_star))


def rugged(rng: np.random.Generator, d: int) -> Callable[[np.ndarray], float]:
    """A bowl with ripples (Rastrigin-like, 3 waves per unit): many local optima, the global one at x*."""
    x_star = _optimum(rng, d)
    return lambda x: -float(np.sum((x - x_star) ** 2) + 0.1 * np.sum(1.0 - np.cos(6.0 * np.pi * (x - x_star))))


def interacting(rng: np.random.Generator, d: int, groups: int = 4) -> Callable[[np.ndarray], float]:
    """Per-group weights that trade off (condition 100, fully rotated) plus a penalty on each group's sum."""
    x_star, rot = _optimum(rng, d), _rotation(rng, d)
    q = rot @ np.diag(np.logspace(0, 2, d)) @ rot.T / 10.0
    sums = x_star.reshape(groups, -1).sum(axis=1)
    return lambda x: -float((x - x_star) @ q @ (x - x_star) + 5.0 * np.sum((x.reshape(groups, -1).sum(axis=1) - sums) ** 2))


PROBLEMS = (Problem("smooth", 10, 1, smooth), Problem("rugged", 10, 1, rugged), Problem("interacting", 4, 4, interacting))


def genome_for(problem: Problem) -> Genome:
    groups = ("all",) if problem.groups == 1 else tuple(f"blocks{i}" for i in range(problem.groups))
    return Genome.build(
        "task_arithmetic", "file:///base", [(f"e{i}", f"file:///e{i}") for i in range(problem.experts)],
        groups, ["weight"], {"weight": (-1.0, 1.0)}, {},
    )


def search_spec(
    algorithm: str, budget: int, seed: int, overrides: dict | None = None, mode: str = "generational", parallelism: int = 1
) -> MergeSearchSpec:
    rounds = max(1, budget // (POPULATION * (ITERATIONS + 1))) if algorithm == "evogm" else 1
    generations = ITERATIONS + 1 if algorithm == "evogm" else -(-budget // POPULATION)
    return MergeSearchSpec.model_validate({
        "baseModel": {"uri": "file:///base"},
        "experts": [{"name": "e0", "uri": "file:///e0"}, {"name": "e1", "uri": "file:///e1"}],
        "search": {
            "algorithm": algorithm, "populationSize": POPULATION, "maxGenerations": generations, "rounds": rounds,
            "seed": seed, "mode": mode, "maxEvaluations": budget, **(overrides or {}),
        },
        "objectives": [{"task": "synthetic", "metric": "score"}],
        "evaluation": {"parallelism": parallelism},
    })


class MemoryHistory:
    def __init__(self) -> None:
        self._events: list[dict] = []

    def events(self) -> list[dict]:
        return list(self._events)

    def append(self, event: dict) -> None:
        self._events.append(event)


class InstantExecutor:
    """Scores each candidate at once: the benchmark counts evaluations, not time."""

    def __init__(self, genome: Genome, objective: Callable[[np.ndarray], float]):
        self.genome, self.objective = genome, objective
        self._done: list[EvalResult] = []

    def submit(self, candidate: str, recipe) -> None:
        self._done.append(EvalResult(candidate, {"synthetic/score": self.objective(self.genome.encode(recipe))}))

    def wait(self) -> list[EvalResult]:
        done, self._done = self._done, []
        return done

    @property
    def pending(self) -> int:
        return len(self._done)

    def close(self) -> None:
        self._done.clear()


@dataclass
class Run:
    best: np.ndarray  # best score after each evaluation
    spread: list[float]  # mean per-gene standard deviation of each generation's candidates


def run(problem: Problem, variant: str, budget: int, seed: int) -> Run:
    """One search through the real runner; candidates in the order they were asked."""
    algorithm, overrides = VARIANTS[variant]
    genome = genome_for(problem)
    objective = problem.build(np.random.default_rng([seed, 12345]), problem.dim)
    spec = search_spec(algorithm, budget, seed, overrides)
    runner = SearchRunner(spec, genome, lambda: make_optimizer(genome, spec.search), InstantExecutor(genome, objective), MemoryHistory())
    candidates = sorted(runner.run().candidates, key=lambda c: c.id)
    scores = np.array([c.fitness if c.fitness is not None else -np.inf for c in candidates])
    generations: dict[int, list[list[float]]] = {}
    for c in candidates:
        generations.setdefault(c.generation, []).append(c.vector)
    spread = [float(np.std(np.array(v), axis=0).mean()) for _, v in sorted(generations.items())]
    return Run(np.maximum.accumulate(scores), spread)


def evaluations_to_reach(trace: np.ndarray, target: float) -> float:
    hits = np.flatnonzero(trace >= target)
    return float(hits[0] + 1) if len(hits) else np.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=160, help="Equal budget of the comparison (random runs 10×).")
    parser.add_argument("--cap", type=int, default=160, help="Longest run of the others, to count evaluations to reach random's best.")
    args = parser.parse_args()
    cap = max(args.cap, args.budget)
    long = RANDOM_FACTOR * args.budget
    print(f"populationSize {POPULATION}; random search runs {long} evaluations, the others {cap}; {args.seeds} seeds")
    print("gap = optimum − best score found (0 is the optimum; lower is better); mean ± sd over seeds\n")
    wins = {"evogm": 0, "evogm+jitter": 0}
    cpu = time.process_time()
    for problem in PROBLEMS:
        runs = {v: [run(problem, v, long if v == "random" else cap, seed) for seed in range(args.seeds)] for v in VARIANTS}
        targets = [r.best[-1] for r in runs["random"]]
        random_gap = -np.array(targets)
        print(f"{problem.name}: d = {problem.dim} ({problem.experts} experts × {problem.groups} layer groups); "
              f"random search's best after {long}: gap {random_gap.mean():.3f} ± {random_gap.std():.3f}")
        print(f"  {'optimizer':<13} {'evals to reach it (median)':>27} {'reached':>8} {'% of ' + str(long):>9} "
              f"{'gap@' + str(args.budget):>16}" + (f" {'gap@' + str(cap):>16}" if cap > args.budget else ""))
        gaps = {}
        for variant, results in runs.items():
            reach = [evaluations_to_reach(r.best, t) for r, t in zip(results, targets)]
            median = float(np.median(reach))
            shown = f"{median:.0f}" if np.isfinite(median) else f">{len(results[0].best)}"
            share = f"{100 * median / long:.1f}%" if np.isfinite(median) else "—"
            gaps[variant] = -np.array([r.best[args.budget - 1] for r in results])
            line = (f"  {variant:<13} {shown:>27} {sum(np.isfinite(reach)):>5}/{len(reach):<2} {share:>9} "
                    f"{gaps[variant].mean():>9.3f} ± {gaps[variant].std():.3f}")
            if cap > args.budget:
                tail = -np.array([r.best[min(cap, len(r.best)) - 1] for r in results])
                line += f" {tail.mean():>9.3f} ± {tail.std():.3f}"
            print(line)
        for variant in wins:
            wins[variant] += gaps[variant].mean() < gaps["cmaes"].mean()
        spread = np.mean([r.spread[: ITERATIONS + 1] for r in runs["evogm"]], axis=0)
        jittered = np.mean([r.spread[: ITERATIONS + 1] for r in runs["evogm+jitter"]], axis=0)
        print(f"  EvoGM spread of round 1's generations (mean per-gene sd): {' → '.join(f'{v:.3f}' for v in spread)}"
              f"  (jitter: {' → '.join(f'{v:.3f}' for v in jittered)})\n")
    for variant, count in wins.items():
        print(f"{variant} beats CMA-ES at equal budget ({args.budget}) on {count} of {len(PROBLEMS)} problems")
    print(f"[{time.process_time() - cpu:.0f} s of CPU]")


if __name__ == "__main__":
    sys.exit(main())
