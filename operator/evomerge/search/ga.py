"""The GA recipe (shared/reference/evogm.md §10): truncation to a parent pool, tournament or rank selection,
elitism, uniform or blend crossover and Gaussian mutation.

With `ga.softmaxWeights` the weights of each layer group are the softmax of per-expert logits — positive and
summing to one — and crossover and mutation act on the logits; other genes, and every gene without it, live in
the unit cube mapped onto their bounds. Mutation σ is in those units (logits, or fractions of a gene's range).
Unset, it follows the merge method (catalogue: `Method.mixture_weights`): the seed recipe's simplex for linear,
the box for task-vector methods, whose optima sum above one and lie outside any simplex.

Generational mode: the best `elitism` members are carried into the next generation without being asked
again (they cost no evaluation). Asynchronous mode is steady state: the population is the best
`populationSize` results so far, and every new candidate is bred from its current parent pool.
Failed evaluations never enter the parent pool and never count as elites.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..spec.merge_search import SearchSpec
from .genome import BoxTransform, Genome, SoftmaxTransform
from .initial import first_members
from .optimizer import Fitness, Optimizer, PendingRows, failed_last_key, register

PURPOSE_INIT, PURPOSE_CHILD, PURPOSE_FALLBACK = 1, 2, 3
BLEND_ALPHA = 0.5  # BLX-α: children may land up to half a parent distance beyond either parent
INIT_LOGIT_SIGMA = 1.0  # wider than mutation so the first generation spans distinct mixes


@dataclass
class Member:
    z: np.ndarray  # the GA's own coordinates (logits and unit-cube values)
    fitness: float | None
    order: int  # ask order: the stable tie-break

    @property
    def key(self) -> tuple[float, int]:
        return failed_last_key(self.fitness, self.order)


@register("ga")
class GeneticAlgorithm(Optimizer):
    def __init__(self, genome: Genome, search: SearchSpec, n_objectives: int = 1, seeds: np.ndarray | None = None):
        super().__init__(genome, search, n_objectives, seeds)
        self.options = search.ga
        softmax = self.options.softmax_for(genome.method) and genome.param_index("weight") is not None
        self.transform: BoxTransform | SoftmaxTransform = SoftmaxTransform(genome) if softmax else BoxTransform(genome)
        self.population_size = search.population_size
        self.steady_state = search.mode == "async"
        self.population: list[Member] = []  # best first
        self._batch: list[Member] = []  # generational: results of the open generation
        self._pending = PendingRows()
        self._asked = 0
        self._initial = self._initial_population()

    def ask(self, n: int) -> np.ndarray:
        rows = []
        waiting = self.steady_state and len(self._pending) > 0  # results of earlier asks are on their way
        while len(rows) < n:
            z = self._next(waiting)
            if z is None:
                break
            x = self.transform.decode(z)
            self._pending.add(x, (z, self._asked))
            self._asked += 1
            rows.append(x)
        return np.array(rows, dtype=np.float64).reshape(len(rows), self.genome.dim)

    def tell(self, vectors: np.ndarray, fitness: Sequence[Fitness]) -> None:
        for x, f in zip(np.asarray(vectors, dtype=np.float64), fitness):
            z, order = self._pending.pop(x)
            value = None if f is None or not math.isfinite(float(f)) else float(f)  # type: ignore[arg-type]
            member = Member(z, value, order)
            if self.steady_state:
                self.population = sorted(self.population + [member], key=lambda m: m.key)[: self.population_size]
            else:
                self._batch.append(member)
        if not self.steady_state and not len(self._pending) and self._batch:
            carried = [m for m in self.population if m.fitness is not None][: self.options.elitism]
            self.population = sorted(carried + self._batch, key=lambda m: m.key)
            self._batch = []

    # ---- proposals ------------------------------------------------------------------------------
    def _next(self, waiting: bool) -> np.ndarray | None:
        index = self._asked
        if index < len(self._initial):
            return self._initial[index]
        pool = self.parent_pool()
        if not pool:
            if waiting:
                return None  # no success to breed from yet; wait for the results in flight
            return self.transform.repair(self._random(self.rng(PURPOSE_FALLBACK, index), 1)[0])
        return self._child(pool, self.rng(PURPOSE_CHILD, index))

    def parent_pool(self) -> list[Member]:
        """The top survivorFraction of the population (at least two members when there are two successes)."""
        successes = [m for m in self.population if m.fitness is not None]
        size = max(2, math.ceil(float(self.options.survivor_fraction) * self.population_size))
        return successes[:size]

    def _initial_population(self) -> list[np.ndarray]:
        """Each expert dominant in turn, the uniform merge, the seeds (search/initial.py), then random members."""
        centre = np.full(self.genome.dim, 0.5)
        if isinstance(self.transform, SoftmaxTransform):
            centre[self.transform.weights] = 0.0  # equal logits: equal weights in every group
        known = first_members(self.genome, self.seeds, self.population_size, self.transform.decode(centre))
        rows = [self.transform.encode(x) for x in known]
        randoms = self._random(self.rng(PURPOSE_INIT), self.population_size)
        rows.extend(randoms[: max(0, self.population_size - len(rows))])
        return [self.transform.repair(r) for r in rows[: self.population_size]]

    def _random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        rows = rng.uniform(0.0, 1.0, (n, self.genome.dim))
        if isinstance(self.transform, SoftmaxTransform):
            rows[:, self.transform.weights] = rng.normal(0.0, INIT_LOGIT_SIGMA, (n, *self.transform.weights.shape))
        return rows

    def _child(self, pool: list[Member], rng: np.random.Generator) -> np.ndarray:
        first = self._select(pool, rng)
        rest = [m for m in pool if m is not first] or pool
        second = self._select(rest, rng)
        z = first.z.copy()
        if rng.random() < float(self.options.crossover_rate):
            if self.options.crossover == "uniform":
                z = np.where(rng.random(z.shape) < 0.5, first.z, second.z)
            else:
                low, high = np.minimum(first.z, second.z), np.maximum(first.z, second.z)
                spread = BLEND_ALPHA * (high - low)
                z = rng.uniform(low - spread, high + spread)
        mutate = rng.random(z.shape) < float(self.options.mutation_rate)
        z = z + mutate * rng.normal(0.0, float(self.options.mutation_sigma), z.shape)
        return self.transform.repair(z)

    def _select(self, pool: list[Member], rng: np.random.Generator) -> Member:
        """Tournament (best of `tournamentSize` drawn from the pool) or rank-weighted draw; pool is best first."""
        if self.options.selection == "tournament":
            drawn = rng.choice(len(pool), size=min(self.options.tournament_size, len(pool)), replace=False)
            return pool[int(drawn.min())]
        weights = np.arange(len(pool), 0, -1, dtype=np.float64)
        return pool[int(rng.choice(len(pool), p=weights / weights.sum()))]
