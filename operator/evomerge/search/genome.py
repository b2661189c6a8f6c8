"""The genome: which numbers evolve (expert × layer group × parameter) and how a vector becomes a recipe."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..merge.recipe import ExpertWeights, MergeRecipe


@dataclass(frozen=True)
class Gene:
    expert: str
    param: str
    group: str
    low: float
    high: float


@dataclass(frozen=True)
class Genome:
    """A fixed ordering of genes; vectors are in the genes' own units, inside [lower, upper]."""

    method: str
    base_uri: str | None
    experts: tuple[tuple[str, str], ...]  # (name, uri)
    groups: tuple[str, ...]
    genes: tuple[Gene, ...]
    options: dict

    @classmethod
    def build(
        cls,
        method: str,
        base_uri: str | None,
        experts: list[tuple[str, str]],
        groups: tuple[str, ...],
        evolve: list[str],
        bounds: dict[str, tuple[float, float]],
        options: dict,
    ) -> "Genome":
        genes = tuple(
            Gene(name, param, group, *bounds[param]) for name, _ in experts for param in evolve for group in groups
        )
        return cls(method, base_uri, tuple(experts), groups, genes, dict(options))

    @property
    def dim(self) -> int:
        return len(self.genes)

    @property
    def lower(self) -> np.ndarray:
        return np.array([g.low for g in self.genes], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([g.high for g in self.genes], dtype=np.float64)

    def clip(self, vector: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(vector, dtype=np.float64), self.lower, self.upper)

    def decode(self, vector: np.ndarray) -> MergeRecipe:
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (self.dim,):
            raise ValueError(f"genome has {self.dim} genes, got a vector of shape {vector.shape}")
        params: dict[str, dict[str, dict[str, float]]] = {name: {} for name, _ in self.experts}
        for gene, value in zip(self.genes, vector):
            params[gene.expert].setdefault(gene.param, {})[gene.group] = float(value)
        return MergeRecipe(
            method=self.method,
            base_uri=self.base_uri,
            experts=tuple(ExpertWeights(name, uri, params[name]) for name, uri in self.experts),
            groups=self.groups,
            options=dict(self.options),
        )

    def encode(self, recipe: MergeRecipe) -> np.ndarray:
        by_name = {e.name: e for e in recipe.experts}
        missing = [name for name, _ in self.experts if name not in by_name]
        if missing:
            raise ValueError(f"recipe lacks expert(s) {', '.join(missing)} of this search")
        return np.array([by_name[g.expert].value(g.param, g.group) for g in self.genes], dtype=np.float64)
