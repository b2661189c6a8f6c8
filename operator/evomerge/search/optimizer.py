"""The optimizer interface every algorithm implements, and the registry the runner builds them from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence

import numpy as np

from ..spec.merge_search import SearchSpec
from .genome import Genome

# A fitness is one float (maximised) or, for multi-objective optimizers, one float per objective.
# None marks a failed evaluation: optimizers must neither crash on it nor treat it as a score.
Fitness = float | tuple[float, ...] | None


class Optimizer(ABC):
    """ask/tell over vectors in the genome's units; deterministic given (spec, seed, history)."""

    def __init__(self, genome: Genome, search: SearchSpec, n_objectives: int = 1):
        self.genome = genome
        self.search = search
        self.n_objectives = n_objectives
        self.round = 0  # multi-round optimizers advance it; the runner reports it

    @abstractmethod
    def ask(self, n: int) -> np.ndarray:
        """n candidate vectors, shape (n, genome.dim)."""

    @abstractmethod
    def tell(self, vectors: np.ndarray, fitness: Sequence[Fitness]) -> None:
        """Results for vectors previously asked, in any grouping."""

    def rng(self, *purpose: int) -> np.random.Generator:
        """A fresh generator per (seed, purpose...): replays do not depend on how many draws came before."""
        return np.random.default_rng([self.search.seed, *purpose])


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {}


def register(name: str):
    def wrap(cls):
        OPTIMIZERS[name] = cls
        return cls

    return wrap


def make_optimizer(genome: Genome, search: SearchSpec, n_objectives: int = 1) -> Optimizer:
    from . import random_search  # noqa: F401  (registers itself)

    if search.algorithm not in OPTIMIZERS:
        raise ValueError(
            f"search.algorithm {search.algorithm!r} is not available in this build; available: {', '.join(sorted(OPTIMIZERS))}"
        )
    return OPTIMIZERS[search.algorithm](genome, search, n_objectives)
