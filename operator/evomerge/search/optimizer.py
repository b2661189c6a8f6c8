"""The optimizer interface every algorithm implements, and the registry the runner builds them from."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Callable, Sequence

import numpy as np

from ..catalogue.algorithms import ALGORITHMS, Algorithm
from ..spec.merge_search import SearchSpec
from .genome import Genome

# A fitness is one float (maximised) or, for multi-objective optimizers, one float per objective.
# None marks a failed evaluation: optimizers must neither crash on it nor treat it as a score.
Fitness = float | tuple[float, ...] | None



class Optimizer(ABC):
    """ask/tell over vectors in the genome's units; deterministic given (spec, seed, history).

    `seeds` (rows in the genome's units, e.g. `Genome.encode` of a known recipe or a past elite) join the
    first population. `entry` (set by `register`) is the algorithm's catalogue entry, which tells the runner
    how to drive it: `multi_objective` (fitness arrives as one value per objective) and `supports_async` (it
    can propose one candidate at a time while others are still being evaluated; ask may then return fewer
    rows than asked for, meaning "wait").
    """

    entry: Algorithm

    def __init__(self, genome: Genome, search: SearchSpec, n_objectives: int = 1, seeds: np.ndarray | None = None):
        if n_objectives < self.entry.min_objectives:
            raise ValueError(f"{self.entry.name} needs at least {self.entry.min_objectives} objectives, got {n_objectives}")
        self.genome = genome
        self.search = search
        self.n_objectives = n_objectives
        self.round = 0  # multi-round optimizers advance it; the runner reports it
        self.finished = False  # an optimizer that has nothing left to propose sets it
        self.seeds = np.zeros((0, genome.dim)) if seeds is None else _checked_seeds(genome, seeds)

    @abstractmethod
    def ask(self, n: int) -> np.ndarray:
        """n candidate vectors, shape (n, genome.dim)."""

    @abstractmethod
    def tell(self, vectors: np.ndarray, fitness: Sequence[Fitness]) -> None:
        """Results for vectors previously asked, in any grouping."""

    def rng(self, *purpose: int) -> np.random.Generator:
        """A fresh generator per (seed, purpose...): replays do not depend on how many draws came before."""
        return np.random.default_rng([self.search.seed, *purpose])


class PendingRows:
    """Asked rows awaiting their results, found again by the exact vector the runner hands back.

    Optimizers keep private coordinates per candidate (logits, per-round coefficients); the runner only
    knows the genome vector, so each asked row is filed under its bytes (first asked, first matched).
    """

    def __init__(self) -> None:
        self._rows: dict[bytes, list[object]] = {}

    def add(self, vector: np.ndarray, payload: object) -> None:
        self._rows.setdefault(_key(vector), []).append(payload)

    def pop(self, vector: np.ndarray) -> object:
        rows = self._rows.get(_key(vector))
        if not rows:
            raise ValueError("tell() got a vector this optimizer never asked for (or was already told)")
        payload = rows.pop(0)
        if not rows:
            del self._rows[_key(vector)]
        return payload

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._rows.values())


def _key(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float64).tobytes()


def _checked_seeds(genome: Genome, seeds: np.ndarray) -> np.ndarray:
    seeds = np.atleast_2d(np.asarray(seeds, dtype=np.float64))
    if seeds.shape[1] != genome.dim:
        raise ValueError(f"seed vectors have {seeds.shape[1]} genes; this genome has {genome.dim}")
    return genome.clip(seeds)


def failed_last_key(fitness: float | None, order: int) -> tuple[float, int]:
    """Sort key, best first: higher fitness, then earlier insertion (stable); failures after every success."""
    return (-fitness if fitness is not None else np.inf, order)


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {}


def register(name: str):
    """Class decorator: the optimizer of the catalogue's algorithm `name`."""

    def wrap(cls):
        cls.entry = ALGORITHMS[name]
        OPTIMIZERS[name] = cls
        return cls

    return wrap


def make_optimizer(
    genome: Genome, search: SearchSpec, n_objectives: int = 1, seeds: np.ndarray | None = None
) -> Optimizer:
    entry = ALGORITHMS.get(search.algorithm)
    if entry is not None:
        importlib.import_module(f"{__package__}.{entry.module}")  # registers itself
    if search.algorithm not in OPTIMIZERS:
        raise ValueError(
            f"search.algorithm {search.algorithm!r} is not available in this build; "
            f"available: {', '.join(sorted(ALGORITHMS))}"
        )
    return OPTIMIZERS[search.algorithm](genome, search, n_objectives, seeds)
