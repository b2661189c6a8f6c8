"""Uniform random search inside the genome's box: the baseline every claim is measured against."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .optimizer import Fitness, Optimizer, register

PURPOSE_SAMPLE = 1


@register("random")
class RandomSearch(Optimizer):
    """Candidate i is drawn from its own generator (seed, i): the same candidates in any batching or mode."""


    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._asked = 0

    def ask(self, n: int) -> np.ndarray:
        rows = [self._row(self._asked + i) for i in range(n)]
        self._asked += n
        return np.stack(rows) if rows else np.zeros((0, self.genome.dim))

    def _row(self, index: int) -> np.ndarray:
        if index < len(self.seeds):
            return self.seeds[index]
        return self.rng(PURPOSE_SAMPLE, index).uniform(self.genome.lower, self.genome.upper)

    def tell(self, vectors: np.ndarray, fitness: Sequence[Fitness]) -> None:
        """Random search learns nothing from results."""
