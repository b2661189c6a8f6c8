"""Seed recipes: known merges (spec.search.seeds, mergekit configs) encoded into the genome to join the first
population — not to be confused with spec.search.seed, the integer every random draw starts from.

`evomerge run` and the cluster's controller both read them through runner/prepare.py; a seed recipe's YAML is
read where the process runs (a path, file://, or pvc:// under the claims the controller Job mounts).
"""

from __future__ import annotations

import numpy as np
import yaml

from ..merge.mergekit_config import MergekitConfigError, from_mergekit_config
from ..merge.recipe import ExpertWeights, MergeRecipe
from ..models.uris import local_file, parse_uri
from ..search.genome import Genome
from ..spec.merge_search import MergeSearchSpec


class SeedRecipeError(ValueError):
    """A seed recipe that cannot join this search."""


def seed_recipe_vectors(spec: MergeSearchSpec, genome: Genome, num_layers: int) -> np.ndarray | None:
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
            vectors.append(genome.encode(over_genome(recipe, genome), clip=True))
        except (MergekitConfigError, OSError, yaml.YAMLError, ValueError, KeyError) as exc:
            raise SeedRecipeError(f"{field}: {exc}") from None
    return np.stack(vectors)


def over_genome(recipe: MergeRecipe, genome: Genome) -> MergeRecipe:
    """The recipe over exactly this genome's experts, in its order and with its base, groups and options.

    An expert the recipe leaves out enters at each gene's low bound (weight 0 by default: the recipe's merge
    unchanged, as mergekit reads a model it is not given); one the genome lacks is dropped.
    """
    known = {e.name: e for e in recipe.experts}
    experts = []
    for name, uri in genome.experts:
        if name in known:
            experts.append(ExpertWeights(name, uri, known[name].params))
            continue
        params: dict[str, dict[str, float]] = {}
        for gene in genome.genes:
            if gene.expert == name:
                params.setdefault(gene.param, {})[gene.group] = gene.low
        experts.append(ExpertWeights(name, uri, params))
    return MergeRecipe(recipe.method, genome.base_uri, tuple(experts), genome.groups, dict(genome.options), recipe.layer_path)


def _read_yaml(uri: str) -> dict:
    path = local_file(uri)
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise SeedRecipeError(f"{path} is not a mergekit YAML mapping")
    return config


def _renamed(recipe: MergeRecipe, by_uri: dict[str, str]) -> MergeRecipe:
    """Name the seed's models after the search's experts, matched by URI."""
    experts = []
    for expert in recipe.experts:
        name = by_uri.get(str(parse_uri(expert.uri)))
        if name is None:
            raise SeedRecipeError(f"model {expert.uri} is not one of this search's experts ({', '.join(by_uri)})")
        experts.append(ExpertWeights(name, expert.uri, expert.params))
    return MergeRecipe(recipe.method, recipe.base_uri, tuple(experts), recipe.groups, recipe.options, recipe.layer_path)
