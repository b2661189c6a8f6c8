"""Asynchronous versus generational evaluation, at equal evaluation counts, on a simulated cluster.

`workers` evaluations run at once (GPUs, evaluation Jobs). Candidate i takes a fixed, uneven time: lognormal
(σ = 0.5) around one unit, and one candidate in ten is a straggler three times slower — long generations,
a slow node. The generational mode waits for the slowest candidate of every generation while the other
workers idle; the asynchronous mode (`search.mode: async`) asks a new candidate as soon as any finishes.
Both run the real SearchRunner and optimizers on a simulated clock (no sleeping) over the "smooth" problem of
benchmarks/optimizers.py; durations depend only on the candidate's index, so both modes pay the same for the
same number of evaluations. Generator training time (EvoGM) is not on the simulated clock.

    .venv/bin/python -P benchmarks/async_eval.py               # 5 seeds, about 2 minutes of CPU (EvoGM training)
    .venv/bin/python -P benchmarks/async_eval.py --markdown-out benchmarks/results/async_eval.md
"""

from __future__ import annotations

import argparse
import heapq
import importlib.util
import shlex
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np

from evomerge.executors.base import EvalResult
from evomerge.runner.loop import SearchRunner
from evomerge.search.genome import Genome
from evomerge.search.optimizer import make_optimizer


def _sibling(name: str) -> ModuleType:
    """A benchmark next to this one, loaded by path: putting benchmarks/ on sys.path would let its files
    shadow modules of the same name elsewhere."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_optimizers = _sibling("optimizers")
PROBLEMS, VARIANTS, MemoryHistory = _optimizers.PROBLEMS, _optimizers.VARIANTS, _optimizers.MemoryHistory
genome_for, search_spec = _optimizers.genome_for, _optimizers.search_spec

BUDGET = 160
ALGORITHMS = ("evogm", "ga", "random")


def durations(seed: int, count: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 777])
    base = rng.lognormal(0.0, 0.5, count)
    return np.where(rng.random(count) < 0.1, 3.0 * base, base)


class SimulatedCluster:
    """An executor with `workers` slots on a simulated clock; each candidate takes its index's duration."""

    def __init__(self, genome: Genome, objective: Callable[[np.ndarray], float], workers: int, times: np.ndarray):
        self.genome, self.objective, self.workers, self.times = genome, objective, workers, times
        self.now = 0.0
        self.busy = 0.0
        self._queue: list[tuple[str, object]] = []
        self._running: list[tuple[float, str, object]] = []

    def submit(self, candidate: str, recipe) -> None:
        self._queue.append((candidate, recipe))
        self._start()

    def _start(self) -> None:
        while self._queue and len(self._running) < self.workers:
            candidate, recipe = self._queue.pop(0)
            took = float(self.times[int(candidate[1:])])
            self.busy += took
            heapq.heappush(self._running, (self.now + took, candidate, recipe))

    def wait(self) -> list[EvalResult]:
        if not self._running:
            return []
        finish, candidate, recipe = heapq.heappop(self._running)
        self.now = finish
        self._start()
        score = self.objective(self.genome.encode(recipe))  # type: ignore[arg-type]
        return [EvalResult(candidate, {"synthetic/score": score}, None, float(self.times[int(candidate[1:])]))]

    @property
    def pending(self) -> int:
        return len(self._running) + len(self._queue)

    def close(self) -> None:
        self._queue.clear()
        self._running.clear()

    def clock(self) -> float:
        return self.now


def simulate(algorithm: str, mode: str, workers: int, seed: int) -> tuple[float, float, float, int]:
    """(simulated wall time, worker utilisation, best gap to the optimum, evaluations)."""
    problem = PROBLEMS[0]
    genome = genome_for(problem)
    objective = problem.build(np.random.default_rng([seed, 12345]), problem.dim)
    spec = search_spec(algorithm, BUDGET, seed, VARIANTS[algorithm][1], mode=mode, parallelism=workers)
    cluster = SimulatedCluster(genome, objective, workers, durations(seed, 4 * BUDGET))
    runner = SearchRunner(spec, genome, lambda: make_optimizer(genome, spec.search), cluster, MemoryHistory(),
                          clock=cluster.clock)
    outcome = runner.run()
    return cluster.now, cluster.busy / (workers * cluster.now), -outcome.best.fitness, len(outcome.candidates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--markdown-out", type=Path, help="Also write the table here (benchmarks/results/async_eval.md feeds docs/benchmarks.md).")
    args = parser.parse_args()
    cpu = time.process_time()
    lines = [
        "| optimizer | workers | wall, generational | wall, async | async / generational | busy, generational "
        "| busy, async | gap, generational | gap, async |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for algorithm in ALGORITHMS:
        for workers in args.workers:
            rows = {mode: np.array([simulate(algorithm, mode, workers, s) for s in range(args.seeds)])
                    for mode in ("generational", "async")}
            gen, asy = rows["generational"].mean(axis=0), rows["async"].mean(axis=0)
            assert gen[3] == asy[3] == BUDGET, "both modes must spend the same number of evaluations"
            lines.append(f"| {algorithm} | {workers} | {gen[0]:.1f} | {asy[0]:.1f} | **{asy[0] / gen[0]:.2f}** "
                         f"| {gen[1]:.0%} | {asy[1]:.0%} | {gen[2]:.3f} | {asy[2]:.3f} |")
    command = shlex.join([".venv/bin/python", "-P", "benchmarks/async_eval.py", *sys.argv[1:]])
    text = "\n".join([
        f"### Asynchronous vs generational evaluation ({args.seeds} seeds)",
        "",
        f"`{command}` ({time.process_time() - cpu:.0f} s of CPU). {BUDGET} evaluations in both modes, populationSize "
        f"20, the smooth problem of benchmarks/optimizers.py (d = 10). Evaluation times are lognormal (σ 0.5) around "
        f"one unit with one straggler in ten three times slower (mean {durations(0, 100000).mean():.2f} units); wall "
        "time in those units on a simulated clock, *busy* = share of worker time spent evaluating, *gap* = optimum − "
        "best score (lower is better); means over seeds.",
        "",
        *lines,
    ]) + "\n"
    print(text, end="")
    if args.markdown_out:
        args.markdown_out.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
