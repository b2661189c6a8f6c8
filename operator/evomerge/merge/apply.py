"""Applying a recipe to tensors: the shared step of the resident merger and the exporter."""

from __future__ import annotations

import torch

from .groups import group_of
from .methods import get_method
from .recipe import MergeRecipe

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def method_options(recipe: MergeRecipe) -> dict:
    method = get_method(recipe.method)
    options = dict(recipe.options)
    if options.get("normalize") is None:
        options["normalize"] = method.normalize_default
    if options.get("dtype") in DTYPES:
        options["compute_dtype"] = DTYPES[options["dtype"]]
    return options


def merge_tensor(
    recipe: MergeRecipe,
    name: str,
    base: torch.Tensor | None,
    experts: list[torch.Tensor],
    num_layers: int,
    options: dict,
) -> torch.Tensor:
    """Merge one tensor; `options` comes from method_options so it is resolved once per recipe."""
    group = group_of(name, recipe.groups, num_layers)
    method = get_method(recipe.method)
    params = [{gene: e.value(gene, group) for gene in e.params} for e in recipe.experts]
    return method.fn(base, experts, params, options)
