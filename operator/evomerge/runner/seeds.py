"""Seeding a search with known merges: mergekit configs from the spec, encoded into the genome."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from ..merge.recipe import ExpertWeights, MergeRecipe
from ..models.uris import parse_uri
from ..report.mergekit_io import MergekitConfigError, from_mergekit_config
from ..search.genome import Genome
from ..spec.merge_search import MergeSearchSpec


class SeedError(ValueError):
    """A seed recipe that cannot join this search."""


def seed_vectors(spec: MergeSearchSpec, genome: Genome, num_layers: int) -> np.ndarray | None:
    """The spec's seed recipes as genome vectors (values outside the bounds are projected onto them)."""
    if not spec.search.seeds:
        return None
    by_uri = {str(parse_uri(e.uri)): e.name for e in spec.experts}
    vectors = []
    for i, seed in enumerate(spec.search.seeds):
        field = f"spec.search.seeds[{i}]"
        try:
            config = seed.mergekit if seed.mergekit is not None else _read_yaml(seed.uri or "")
            recipe = _renamed(from_mergekit_config(config, num_layers), by_uri)
            vectors.append(genome.encode(recipe, clip=True))
        except (MergekitConfigError, OSError, yaml.YAMLError, ValueError, KeyError) as exc:
            raise SeedError(f"{field}: {exc}") from None
    return np.stack(vectors)


def _read_yaml(uri: str) -> dict:
    path = Path(uri.removeprefix("file://")).expanduser()
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise SeedError(f"{path} is not a mergekit YAML mapping")
    return config


def _renamed(recipe: MergeRecipe, by_uri: dict[str, str]) -> MergeRecipe:
    """Name the seed's models after the search's experts, matched by URI."""
    experts = []
    for expert in recipe.experts:
        name = by_uri.get(str(parse_uri(expert.uri)))
        if name is None:
            raise SeedError(f"model {expert.uri} is not one of this search's experts ({', '.join(by_uri)})")
        experts.append(ExpertWeights(name, expert.uri, expert.params))
    return MergeRecipe(recipe.method, recipe.base_uri, tuple(experts), recipe.groups, recipe.options, recipe.layer_path)
