"""NSGA-II from pymoo, driven through its ask/tell interface: several objectives at once, a Pareto front out.

pymoo minimises; fitness tuples arrive maximised, so they are negated. A failed evaluation becomes an
infeasible point (one inequality constraint, violated): NSGA-II's constrained domination ranks it below every
feasible point without inventing objective values for it. pymoo keeps its own numpy Generator seeded from
(search seed, purpose), so its proposals do not depend on anything else drawing random numbers. Its first
population starts with the known members of search/initial.py (each expert alone — the extremes of a front of
per-skill objectives —, the uniform merge, the seed recipes), then uniform draws from the box.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2 as PymooNSGA2
from pymoo.core.evaluator import Evaluator
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.termination import NoTermination
from pymoo.problems.static import StaticProblem

from ..spec.merge_search import SearchSpec
from .genome import Genome
from .initial import centre, first_members
from .optimizer import Fitness, Optimizer, PendingRows, register

PURPOSE_PYMOO, PURPOSE_INIT = 1, 2


@register("nsga2")
class NSGA2(Optimizer):
    def __init__(self, genome: Genome, search: SearchSpec, n_objectives: int = 1, seeds: np.ndarray | None = None):
        super().__init__(genome, search, n_objectives, seeds)
        self.problem = Problem(n_var=genome.dim, n_obj=n_objectives, n_ieq_constr=1, xl=genome.lower, xu=genome.upper)
        size = search.population_size
        initial = self.rng(PURPOSE_INIT).uniform(genome.lower, genome.upper, (size, genome.dim))
        known = first_members(genome, self.seeds, size, centre(genome))  # each expert alone: the front's extremes
        initial[: len(known)] = known
        self.algorithm = PymooNSGA2(pop_size=size, n_offsprings=size, sampling=initial, eliminate_duplicates=True)
        self.algorithm.setup(self.problem, termination=NoTermination(), seed=int(self.rng(PURPOSE_PYMOO).integers(2**31 - 1)))
        self._batch: Population | None = None  # pymoo's open infill
        self._handed = 0  # rows of the open infill handed out so far
        self._results: dict[int, Fitness] = {}
        self._pending = PendingRows()

    def ask(self, n: int) -> np.ndarray:
        rows = []
        while len(rows) < n:
            if self._batch is None or self._handed == len(self._batch):
                if self._batch is not None:
                    break  # the open infill must be told before pymoo can breed again
                self._batch, self._handed, self._results = self.algorithm.ask(), 0, {}
            x = np.array(self._batch[self._handed].X, dtype=np.float64)
            self._pending.add(x, self._handed)
            self._handed += 1
            rows.append(x)
        return np.array(rows, dtype=np.float64).reshape(len(rows), self.genome.dim)

    def tell(self, vectors: np.ndarray, fitness: Sequence[Fitness]) -> None:
        for x, f in zip(np.asarray(vectors, dtype=np.float64), fitness):
            self._results[self._pending.pop(x)] = f  # type: ignore[assignment]
        if self._batch is not None and len(self._results) == len(self._batch):
            self._advance()

    def _advance(self) -> None:
        batch = self._batch
        objectives = np.zeros((len(batch), self.n_objectives))  # type: ignore[arg-type]
        violation = np.ones((len(batch), 1))  # type: ignore[arg-type]
        for i, f in self._results.items():
            values = None if f is None else tuple(float(v) for v in f)  # type: ignore[union-attr]
            if values is not None and len(values) == self.n_objectives and all(math.isfinite(v) for v in values):
                objectives[i] = [-v for v in values]
                violation[i] = -1.0
        Evaluator().eval(StaticProblem(self.problem, F=objectives, G=violation), batch)
        self.algorithm.tell(infills=batch)
        self._batch, self._results = None, {}

    def pareto_front(self) -> np.ndarray:
        """Vectors of pymoo's current non-dominated feasible set (the runner's own front spans all history)."""
        opt = self.algorithm.opt
        if opt is None or len(opt) == 0:
            return np.zeros((0, self.genome.dim))
        feasible = opt.get("CV")[:, 0] <= 0
        return np.array(opt.get("X"), dtype=np.float64)[feasible]
