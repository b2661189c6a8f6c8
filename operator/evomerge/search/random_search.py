"""Uniform random search inside the genome's box: the baseline every claim is measured against."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .optimizer import Fitness, Optimizer, register


@register("random")
class RandomSearch(Optimizer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._asked = 0

    def ask(self, n: int) -> np.ndarray:
        rows = [self.rng(1, self._asked + i).uniform(self.genome.lower, self.genome.upper) for i in range(n)]
        self._asked += n
        return np.stack(rows)

    def tell(self, vectors: np.ndarray, fitness: Sequence[Fitness]) -> None:
        """Random search learns nothing from results."""
