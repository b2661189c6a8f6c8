"""The genome: which numbers evolve (expert × layer group × parameter) and how a vector becomes a recipe.

A vector is always in the genes' own units (a weight is a weight). Optimizers that prefer other
coordinates go through a transform: `BoxTransform` (the unit cube, for CMA-ES and the box GA) or
`SoftmaxTransform` (per-group logits whose softmax is the weights, the GA recipe of reference/evogm.md §10).

With data-flow merging (`PathGenes`) the genome ends with Sakana's DFS genes: one indicator per slot of the
M·r layer layout (the slot's layer runs iff its indicator is positive) and, optionally, one input scale per
slot; `decode` turns them into the recipe's `layer_path`. A data-flow spec (merge.dataFlow.enabled) evolves
the path alone: its genome has no per-expert genes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..merge.layer_path import LayerPath, decode_path
from ..merge.groups import group_names
from ..merge.recipe import ExpertWeights, MergeRecipe
from ..spec.merge_search import MergeSearchSpec, path_models

PATH = "@path"  # the owner of data-flow genes; "@" cannot start an expert name
DEFAULT_PATH_BOUNDS: dict[str, tuple[float, float]] = {"indicator": (-1.0, 1.0), "scale": (0.5, 2.0)}


@dataclass(frozen=True)
class Gene:
    expert: str
    param: str
    group: str
    low: float
    high: float


@dataclass(frozen=True)
class PathGenes:
    """The layer layout a data-flow path is evolved over: models[0] is A (embeddings, head, first/last layer)."""

    models: tuple[str, ...]
    layers: tuple[int, ...]  # depth of each model
    repeats: int
    evolve_scales: bool = True
    sources: tuple[tuple[str, str], ...] = ()  # (model, uri) of path models that are not recipe experts

    @property
    def slots(self) -> int:
        return sum(self.layers) * self.repeats

    def owners(self) -> list[tuple[str, int]]:
        """(model, layer) of each slot."""
        layout = [(m, layer) for m, n in zip(self.models, self.layers) for layer in range(n)]
        return [layout[t % len(layout)] for t in range(self.slots)]


@dataclass(frozen=True)
class Genome:
    """A fixed ordering of genes; vectors are in the genes' own units, inside [lower, upper]."""

    method: str
    base_uri: str | None
    experts: tuple[tuple[str, str], ...]  # (name, uri)
    groups: tuple[str, ...]
    genes: tuple[Gene, ...]
    options: dict
    path: PathGenes | None = None

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
        path: PathGenes | None = None,
        path_bounds: dict[str, tuple[float, float]] | None = None,
    ) -> "Genome":
        genes = tuple(
            Gene(name, param, group, *bounds[param]) for name, _ in experts for param in evolve for group in groups
        )
        if path is not None:
            limits = {**DEFAULT_PATH_BOUNDS, **(path_bounds or {})}
            low, high = limits["indicator"]
            if not low < 0 < high:
                raise ValueError(f"data-flow indicator bounds {limits['indicator']} must straddle 0 (a slot is on iff > 0)")
            if not 0 < limits["scale"][0] < limits["scale"][1]:
                raise ValueError(f"data-flow scale bounds {limits['scale']} must be positive and ordered")
            params = ["indicator", "scale"] if path.evolve_scales else ["indicator"]
            genes += tuple(Gene(PATH, param, f"slot{t}", *limits[param]) for param in params for t in range(path.slots))
        return cls(method, base_uri, tuple(experts), groups, genes, dict(options), path)

    @property
    def dim(self) -> int:
        return len(self.genes)

    @property
    def lower(self) -> np.ndarray:
        return np.array([g.low for g in self.genes], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([g.high for g in self.genes], dtype=np.float64)

    @property
    def params(self) -> tuple[str, ...]:
        """The evolved parameters, in gene order."""
        return tuple(dict.fromkeys(g.param for g in self.genes))

    def param_index(self, param: str) -> np.ndarray | None:
        """Gene indices of one parameter as a (groups, experts) array; None when it does not evolve."""
        where = {(g.group, g.expert): i for i, g in enumerate(self.genes) if g.param == param}
        if not where:
            return None
        return np.array([[where[(group, name)] for name, _ in self.experts] for group in self.groups], dtype=np.int64)

    def clip(self, vector: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(vector, dtype=np.float64), self.lower, self.upper)

    def to_unit(self, vectors: np.ndarray) -> np.ndarray:
        """Genes → the unit cube (0 at each lower bound, 1 at each upper bound); rows or one vector."""
        return (np.asarray(vectors, dtype=np.float64) - self.lower) / (self.upper - self.lower)

    def from_unit(self, units: np.ndarray) -> np.ndarray:
        """The unit cube → genes, clipped into the box (exact at both faces)."""
        units = np.clip(np.asarray(units, dtype=np.float64), 0.0, 1.0)
        return self.clip(self.lower * (1.0 - units) + self.upper * units)

    def decode(self, vector: np.ndarray) -> MergeRecipe:
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (self.dim,):
            raise ValueError(f"genome has {self.dim} genes, got a vector of shape {vector.shape}")
        params: dict[str, dict[str, dict[str, float]]] = {name: {} for name, _ in self.experts}
        for gene, value in zip(self.genes, vector):
            if gene.expert != PATH:
                params[gene.expert].setdefault(gene.param, {})[gene.group] = float(value)
        return MergeRecipe(
            method=self.method,
            base_uri=self.base_uri,
            experts=tuple(ExpertWeights(name, uri, params[name]) for name, uri in self.experts),
            groups=self.groups,
            options=dict(self.options),
            layer_path=self._decode_path(vector),
        )

    def _path_index(self, param: str) -> np.ndarray:
        return np.array([i for i, g in enumerate(self.genes) if g.expert == PATH and g.param == param], dtype=np.int64)

    def _decode_path(self, vector: np.ndarray) -> LayerPath | None:
        if self.path is None:
            return None
        p = self.path
        scales = vector[self._path_index("scale")] if p.evolve_scales else None
        return decode_path(vector[self._path_index("indicator")], p.models, p.layers, p.repeats, scales, dict(p.sources))

    def _encode_path(self, path: LayerPath | None) -> dict[tuple[str, str], float]:
        """Indicator (± half the bound) and scale genes that decode to the recipe's path."""
        p = self.path
        assert p is not None
        if path is None:
            raise ValueError("recipe has no layerPath, but this search evolves a data-flow path")
        if path.models != p.models:
            raise ValueError(f"recipe's layer path runs over {list(path.models)}; this search's over {list(p.models)}")
        low, high = next((g.low, g.high) for g in self.genes if g.param == "indicator")
        values = {("indicator", f"slot{t}"): low / 2 for t in range(p.slots)}
        values.update({("scale", f"slot{t}"): 1.0 for t in range(p.slots)})
        owners, slot = p.owners(), 0
        for i, hop in enumerate(path.hops):
            while slot < p.slots and owners[slot] != (hop.model, hop.layer):
                slot += 1
            if slot == p.slots:
                raise ValueError(f"layer path hop {i} ({hop.model} layer {hop.layer}) does not fit {p.repeats} repeats of the layout")
            values[("indicator", f"slot{slot}")] = high / 2
            values[("scale", f"slot{slot}")] = hop.scale
            slot += 1
        return values

    def encode(self, recipe: MergeRecipe, clip: bool = False) -> np.ndarray:
        """A recipe's values as a vector of this genome, e.g. to seed a search with a known merge or a past elite.

        A recipe may set one value for group "all" where the genome has several groups. Values outside the
        bounds are an error unless clip=True, which projects them onto the box.
        """
        by_name = {e.name: e for e in recipe.experts}
        missing = [name for name, _ in self.experts if name not in by_name]
        if missing:
            raise ValueError(f"recipe lacks expert(s) {', '.join(missing)} of this search")
        path = self._encode_path(recipe.layer_path) if self.path is not None else {}
        values = []
        for g in self.genes:
            if g.expert == PATH:
                values.append(path[(g.param, g.group)])
                continue
            expert = by_name[g.expert]
            groups = expert.params.get(g.param)
            if groups is None or (g.group not in groups and "all" not in groups):
                raise ValueError(
                    f"recipe: expert {g.expert!r} has no {g.param!r} for layer group {g.group!r} — "
                    f"add it, or remove {g.param!r} from merge.evolve"
                )
            values.append(expert.value(g.param, g.group))
        vector = np.array(values, dtype=np.float64)
        outside = [(g, v) for g, v in zip(self.genes, vector) if not g.low <= v <= g.high]
        if outside and not clip:
            gene, value = outside[0]
            owner = "data-flow path" if gene.expert == PATH else f"expert {gene.expert!r}"
            raise ValueError(
                f"recipe: {owner} {gene.param}[{gene.group}] = {value} lies outside its bounds "
                f"[{gene.low}, {gene.high}] — widen the bounds or encode with clip=True"
            )
        return self.clip(vector)


class BoxTransform:
    """Optimizer coordinates in the unit cube, mapped affinely onto each gene's bounds."""

    def __init__(self, genome: Genome):
        self.genome = genome

    def decode(self, z: np.ndarray) -> np.ndarray:
        return self.genome.from_unit(z)

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        return np.clip(self.genome.to_unit(vectors), 0.0, 1.0)

    def repair(self, z: np.ndarray) -> np.ndarray:
        return np.clip(z, 0.0, 1.0)


class SoftmaxTransform:
    """Weights of each layer group as the softmax of per-expert logits; every other gene as in BoxTransform.

    The weights of a group are then positive and sum to one (a convex combination). Softmax ignores a common
    shift of a group's logits, so `repair` re-centres them to mean zero and clips them to ±logit_limit:
    without it the redundant direction drifts without bound.
    """

    def __init__(self, genome: Genome, logit_limit: float = 6.0):
        index = genome.param_index("weight")
        if index is None:
            raise ValueError("a softmax genome needs 'weight' in merge.evolve")
        self.genome = genome
        self.weights = index  # (groups, experts)
        self.logit_limit = logit_limit
        others = np.ones(genome.dim, dtype=bool)
        others[index.ravel()] = False
        self.others = np.flatnonzero(others)

    def decode(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        x = self.genome.from_unit(z)  # sets the non-weight genes; weights are overwritten below
        logits = z[..., self.weights]
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        x[..., self.weights] = shifted / shifted.sum(axis=-1, keepdims=True)
        return self.genome.clip(x)

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float64)
        z = np.clip(self.genome.to_unit(vectors), 0.0, 1.0)
        z[..., self.weights] = np.log(np.maximum(vectors[..., self.weights], 1e-12))
        return self.repair(z)

    def repair(self, z: np.ndarray) -> np.ndarray:
        z = np.array(z, dtype=np.float64)
        logits = z[..., self.weights]
        z[..., self.weights] = np.clip(logits - logits.mean(axis=-1, keepdims=True), -self.logit_limit, self.logit_limit)
        z[..., self.others] = np.clip(z[..., self.others], 0.0, 1.0)
        return z


def genome_for(spec: MergeSearchSpec, num_layers: int, path_layers: Mapping[str, int] | None = None) -> Genome:
    """The genome a spec declares, for a base model of `num_layers` blocks.

    A data-flow spec evolves a layer path alone; `path_layers` gives each path model's depth (default:
    every expert has `num_layers`; required with merge.dataFlow.modelA, whose depth may differ).
    """
    merge = spec.merge
    if merge.data_flow.enabled:
        return _path_genome(spec, num_layers, path_layers)
    groups = group_names(merge.granularity, num_layers, merge.layer_groups, merge.split_modules)
    options = {"normalize": merge.normalize, "lambda": merge.lambda_, "rescale": merge.rescale, "dtype": merge.dtype}
    return Genome.build(
        method=merge.method,
        base_uri=spec.base_model.uri if spec.base_model else None,
        experts=[(e.name, e.uri) for e in spec.experts],
        groups=groups,
        evolve=list(merge.evolve),
        bounds=merge.bounds.by_gene(),
        options={k: v for k, v in options.items() if v is not None},
    )


def _path_genome(spec: MergeSearchSpec, num_layers: int, path_layers: Mapping[str, int] | None) -> Genome:
    flow = spec.merge.data_flow
    models = path_models(spec)
    if path_layers is None:
        if flow.model_a is not None:
            raise ValueError(
                "spec.merge.dataFlow.modelA: the depth of model A is unknown here — read its config.json and pass "
                "path_layers (the local runner does)"
            )
        path_layers = {name: num_layers for name, _ in models}
    missing = [name for name, _ in models if name not in path_layers]
    if missing:
        raise ValueError(f"path_layers: no depth for path model(s) {', '.join(missing)}")
    experts = {e.name for e in spec.experts}
    path = PathGenes(
        models=tuple(name for name, _ in models),
        layers=tuple(int(path_layers[name]) for name, _ in models),
        repeats=flow.repeats,
        evolve_scales=flow.evolve_scales,
        sources=tuple((name, uri) for name, uri in models if name not in experts),
    )
    return Genome.build(
        method=spec.merge.method,
        base_uri=spec.base_model.uri if spec.base_model else None,
        experts=[(e.name, e.uri) for e in spec.experts],
        groups=("all",),
        evolve=[],
        bounds={},
        options={"dtype": spec.merge.dtype},
        path=path,
        path_bounds={"scale": tuple(flow.scale_bounds)},
    )
