"""Local refinement around the best merge once the search proper has stopped (`search.refine`).

The seed GA recipe ends with "optional local search: (1+1)-ES or coordinate steps ±h around the best, small
budget" (shared/reference/evogm.md §10): a global optimizer spends its last generations on a population that
has already converged, or stops early; a few small steps around its best are the cheapest way to use what is
left. This is a (1+λ)-ES in the unit cube over each gene's bounds: each step proposes λ Gaussian neighbours of the
incumbent (λ = evaluation.parallelism, so a cluster's evaluation pods stay busy; 1 on one machine: the recipe's
(1+1)-ES), the incumbent moves to the best of them only if it is strictly better, and the step size follows
Rechenberg's 1/5th success rule (×e^{1/3} after a success, ×e^{-1/12} after a failure: stable when one step in
five succeeds). Failed evaluations count as failures of the step.

Deterministic given (spec, seed, the incumbent it starts from, the results): step s draws from its own generator
(seed, purpose, s), so the runner replays it from the history like any optimizer.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..spec.merge_search import SearchSpec
from .genome import BoxTransform, Genome
from .optimizer import Fitness, PendingRows

PURPOSE_REFINE = 101  # apart from every optimizer's purposes: the refinement never shares their draws
SUCCESS, FAILURE = math.exp(1 / 3), math.exp(-1 / 12)  # the 1/5th rule: SUCCESS · FAILURE⁴ = 1
SIGMA_RANGE = (1e-4, 0.5)  # in fractions of each gene's range: never frozen, never global


class Refiner:
    """ask/tell around an incumbent (genome units) and its fitness; `best` and `fitness` are where it stands."""

    def __init__(self, genome: Genome, search: SearchSpec, start: np.ndarray, fitness: float):
        if search.refine is None:
            raise ValueError("search.refine is not set")
        self.genome = genome
        self.seed = search.seed
        self.transform = BoxTransform(genome)
        self.centre = self.transform.encode(np.asarray(start, dtype=np.float64))
        self.best = genome.clip(np.asarray(start, dtype=np.float64))
        self.fitness = float(fitness)
        self.sigma = float(search.refine.step_size)
        self.steps = 0  # steps told so far
        self.successes = 0
        self._pending = PendingRows()
        self._asked = 0  # rows asked in the open step
        self._results: list[tuple[int, np.ndarray, float | None]] = []

    def ask(self, n: int) -> np.ndarray:
        """n neighbours of the incumbent, all of the open step (a step is told once all its rows are back)."""
        rng = np.random.default_rng([self.seed, PURPOSE_REFINE, self.steps, self._asked])
        units = np.clip(self.centre + self.sigma * rng.standard_normal((n, self.genome.dim)), 0.0, 1.0)
        rows = self.transform.decode(units)
        for x in rows:
            self._pending.add(x, self._asked)
            self._asked += 1
        return rows.reshape(n, self.genome.dim)

    def tell(self, vectors: np.ndarray, fitness: Sequence[Fitness]) -> None:
        for x, f in zip(np.asarray(vectors, dtype=np.float64), fitness):
            order = self._pending.pop(x)
            value = None if f is None or not math.isfinite(float(f)) else float(f)  # type: ignore[arg-type]
            self._results.append((order, x, value))  # type: ignore[arg-type]
        if not len(self._pending) and self._results:
            self._step()

    def _step(self) -> None:
        scored = [(order, x, f) for order, x, f in sorted(self._results, key=lambda r: r[0]) if f is not None]
        winner = max(scored, key=lambda r: (r[2], -r[0]), default=None)
        if winner is not None and winner[2] > self.fitness:
            self.best, self.fitness = winner[1], winner[2]
            self.centre = self.transform.encode(winner[1])
            self.sigma *= SUCCESS
            self.successes += 1
        else:
            self.sigma *= FAILURE
        self.sigma = float(np.clip(self.sigma, *SIGMA_RANGE))
        self.steps += 1
        self._asked = 0
        self._results = []
