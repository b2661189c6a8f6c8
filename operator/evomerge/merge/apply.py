"""Applying a recipe to tensors: the shared step of the resident merger and the exporter."""

from __future__ import annotations

import torch

from ..catalogue.methods import LAMBDA, NORMALIZE, RESCALE
from .groups import group_of
from .methods import MergeMethod, get_method
from .recipe import MergeRecipe
from .sparsify import MASK_RNGS, TIE_ORDERS

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


class RecipeError(ValueError):
    """A recipe that cannot be applied as written."""


def resolve_dtype(value: str | None, key: str = "dtype") -> torch.dtype | None:
    if value in (None, "auto"):
        return None
    if value not in DTYPES:
        raise RecipeError(f"recipe option {key}: {value!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[value]


def method_options(recipe: MergeRecipe, tie_order: str = "index") -> dict:
    """The recipe's options with the method's mergekit defaults filled in, resolved once per recipe.

    Keys: normalize, rescale, lambda and the method's own options (catalogue/methods.py), compute_dtype /
    out_dtype (torch dtypes or None), seed (DARE's masks), tie_order ("index" or "mergekit"; the argument is the
    default where the recipe names none: the exporter promises mergekit's bytes, the resident merger cuts fast)
    and mask_rng ("counter" or "mergekit"), see sparsify.py.
    """
    method = get_method(recipe.method)
    options = dict(recipe.options)
    tie_order = options.get("tie_order") or tie_order
    if tie_order not in TIE_ORDERS:
        raise RecipeError(f"recipe option tie_order: {tie_order!r} is not one of {', '.join(TIE_ORDERS)}")
    mask_rng = options.get("mask_rng") or "counter"
    if mask_rng not in MASK_RNGS:
        raise RecipeError(f"recipe option mask_rng: {mask_rng!r} is not one of {', '.join(MASK_RNGS)}")
    for option in dict.fromkeys((NORMALIZE, RESCALE, LAMBDA, *method.options)):
        value = options.get(option.name)
        options[option.name] = method.default(option) if value is None else option.type(value)
    options.update(
        compute_dtype=resolve_dtype(options.get("dtype")),
        out_dtype=resolve_dtype(options.get("out_dtype"), "out_dtype"),
        seed=int(options.get("seed") or 0),
        tie_order=tie_order,
        mask_rng=mask_rng,
    )
    return options


def expert_params(recipe: MergeRecipe, method: MergeMethod, group: str) -> list[dict[str, float]]:
    """Each expert's parameters for one layer group; density defaults to 1 (mergekit's default)."""
    params: list[dict[str, float]] = []
    for expert in recipe.experts:
        values: dict[str, float] = {}
        for gene in method.genes:
            try:
                values[gene] = float(expert.value(gene, group, 1.0 if gene == "density" else None))
            except KeyError:
                raise RecipeError(
                    f"expert {expert.name!r}: no {gene} for layer group {group!r} (and no 'all' value) — "
                    f"{method.name} needs {', '.join(method.genes)} for every group"
                ) from None
        params.append(values)
    return params


def merge_tensor(
    recipe: MergeRecipe,
    name: str,
    base: torch.Tensor | None,
    experts: list[torch.Tensor],
    num_layers: int,
    options: dict,
) -> torch.Tensor:
    """Merge one tensor; `options` comes from method_options so it is resolved once per recipe."""
    method = get_method(recipe.method)
    inputs = [t for t in (base, *experts) if t is not None]
    if not inputs[0].is_floating_point():
        return _shared_buffer(name, inputs)
    params = expert_params(recipe, method, group_of(name, recipe.groups, num_layers))
    merged = method.fn(base if method.needs_base else None, experts, params, options, name)
    return merged if options["out_dtype"] is None else merged.to(options["out_dtype"])


def _shared_buffer(name: str, inputs: list[torch.Tensor]) -> torch.Tensor:
    """Integer buffers are not merged: they must agree, and are copied (mergekit does the same)."""
    if any(not torch.equal(inputs[0], t) for t in inputs[1:]):
        raise RecipeError(f"tensor {name}: non-floating buffer differs between inputs — it cannot be merged")
    return inputs[0]
