"""CMA-ES from the `cmaes` package, in the unit cube mapped onto the genome's bounds.

Sakana's evolutionary model merge started at the centre of the box with σ₀ = 1/6 of its width; both are
spec.search.cmaes options. One CMA generation is `populationSize` candidates. Known members — each expert
dominant in turn (search/initial.py), then the seed recipes — are the first candidates of the first generation,
told to CMA with the samples drawn around them; the first seed is also the starting mean. An injected point far
from the mean would drag the mean and inflate the covariance in one update, so it is told clipped to the
Mahalanobis length √n + 2n/(n+2) from the mean, its own fitness kept (Hansen, "Injecting external solutions into
CMA-ES", arXiv 1110.4181; `injected`, which EvoGM's CMA-hosted variant needs too).

A failed evaluation ranks below every success of its generation (as an infeasible point would): CMA-ES only
uses ranks, so no made-up score leaks into the update. A generation in which every evaluation failed is
dropped and sampled again from the same distribution.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from cmaes import CMA

from ..spec.merge_search import SearchSpec
from .genome import BoxTransform, Genome
from .initial import first_members
from .optimizer import Fitness, Optimizer, PendingRows, register

PURPOSE_CMA = 1


@register("cmaes")
class CMAES(Optimizer):
    def __init__(self, genome: Genome, search: SearchSpec, n_objectives: int = 1, seeds: np.ndarray | None = None):
        super().__init__(genome, search, n_objectives, seeds)
        self.transform = BoxTransform(genome)
        options = search.cmaes
        mean = self.transform.encode(self.seeds[0]) if len(self.seeds) else np.full(genome.dim, float(options.mean0))
        self.popsize = search.population_size
        self.cma = CMA(
            mean=np.clip(mean, 0.0, 1.0),
            sigma=float(options.sigma0),
            bounds=np.tile([0.0, 1.0], (genome.dim, 1)),
            seed=int(self.rng(PURPOSE_CMA).integers(2**31 - 1)),
            population_size=self.popsize,
        )
        # as GA, NSGA-II and EvoGM: no more known members than the generation holds; the mean is CMA's uniform merge
        self._first = first_members(genome, self.seeds, self.popsize, None)
        self._pending = PendingRows()
        self._results: list[tuple[int, np.ndarray, float | None]] = []  # (order, unit point, fitness) this generation
        self._asked = 0  # candidates asked from the current distribution

    def ask(self, n: int) -> np.ndarray:
        rows = []
        for _ in range(n):
            if self.cma.generation == 0 and self._asked < len(self._first):  # not again after a generation failed
                x = self._first[self._asked]
                unit = self.transform.encode(x)
            else:
                unit = self.cma.ask()
                x = self.transform.decode(unit)
            self._pending.add(x, (self.cma.generation, self._asked, unit))
            self._asked += 1
            rows.append(x)
        return np.array(rows, dtype=np.float64).reshape(n, self.genome.dim)

    def tell(self, vectors: np.ndarray, fitness: Sequence[Fitness]) -> None:
        for x, f in zip(np.asarray(vectors, dtype=np.float64), fitness):
            generation, order, unit = self._pending.pop(x)
            if generation != self.cma.generation:
                continue  # sampled from a distribution that has moved on (only after a partial generation)
            value = None if f is None or not math.isfinite(float(f)) else float(f)  # type: ignore[arg-type]
            self._results.append((order, unit, value))
            if len(self._results) == self.popsize:
                self._update()

    def _update(self) -> None:
        results = sorted(self._results, key=lambda r: r[0])
        self._results = []
        successes = [r[2] for r in results if r[2] is not None]
        if not successes:
            return  # nothing learnt; the next asks sample the same distribution again
        worst = -min(successes)  # cmaes minimises
        solutions = []
        for rank, (order, unit, value) in enumerate(results):
            external = self.cma.generation == 0 and order < len(self._first)
            told = injected(self.cma, unit) if external else unit
            solutions.append((told, -value if value is not None else worst + 1.0 + rank))
        self.cma.tell(solutions)
        self._asked = 0
        if self.cma.should_stop():
            self.finished = True


def injected(cma: CMA, unit: np.ndarray) -> np.ndarray:
    """A point CMA-ES did not sample, as it may learn from it: its step from the mean clipped to the Mahalanobis
    length √n + 2n/(n+2) (Hansen, arXiv 1110.4181), so one far point cannot drag the mean and inflate the
    covariance in one update; its fitness is kept. Reads cmaes's private eigenbasis and σ (0.13.1 is pinned)."""
    n = len(unit)
    B, D = cma._eigen_decomposition()
    sigma = float(cma._sigma)
    step = (unit - cma.mean) / sigma
    length = float(np.linalg.norm((B.T @ step) / D))
    limit = math.sqrt(n) + 2.0 * n / (n + 2.0)
    return cma.mean + sigma * step * min(1.0, limit / length) if length > 0 else np.array(unit, dtype=np.float64)
