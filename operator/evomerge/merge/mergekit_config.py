"""A MergeRecipe rendered as a mergekit 0.1.5 YAML config, so any candidate can be reproduced with mergekit.

Layer groups become `slices` (one per contiguous block group). Inside a slice, parameters are filter
lists whose first match wins, mirroring `group_of`: attention hints → the attention value (when modules
are split), `layers.` → the block value, embedding hints → the embedding group, anything else (final
norm, head) → the head group. mergekit resolves embeddings against the first slice and the final norm
and head against the last, and the filters route each to its own group. A layer path becomes a
`passthrough` merge with one slice per hop, the hop scales folded into the output projections through
the per-input `scale` parameter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models.lora import is_lora_dir
from ..models.uris import parse_uri
from .apply import method_options
from .dataflow import FOLD_SUFFIXES, cumulative_scales
from .groups import _ATTN_HINTS, _EMBED_HINTS, group_of
from .layer_path import BASE, MERGED, LayerPathError
from .methods import get_method
from .recipe import MergeRecipe

_LAYER_FILTER = "layers."


def model_path(uri: str) -> str:
    """What mergekit's `model:` needs: a local path (file://, plain) or a Hugging Face repo id (hf://)."""
    parsed = parse_uri(uri)
    if parsed.scheme == "hf":
        return parsed.location
    if parsed.scheme == "file":
        return parsed.location if parsed.location.startswith("/") else "/" + parsed.location
    from ..models.uris import local_path

    return str(local_path(uri))


def to_mergekit_config(recipe: MergeRecipe, num_layers: int, paths: dict[str, str] | None = None) -> dict[str, Any]:
    """The mergekit config (as a dict; yaml.safe_dump it) that computes the same merge as `recipe`.

    `paths` overrides where mergekit finds a model, by name ("base" or an expert name). A LoRA expert's
    adapter directory is rendered as mergekit's `base+adapter` reference.
    """
    resolved = _paths(recipe, paths or {})
    if recipe.layer_path is not None:
        return _path_config(recipe, resolved)
    method = get_method(recipe.method)
    options = method_options(recipe)
    config: dict[str, Any] = {"merge_method": method.mergekit_name}
    if method.needs_base:
        config["base_model"] = resolved[BASE]
    if options["compute_dtype"] is not None:
        config["dtype"] = str(options["compute_dtype"]).removeprefix("torch.")
    if options["out_dtype"] is not None:
        config["out_dtype"] = str(options["out_dtype"]).removeprefix("torch.")
    shared: dict[str, Any] = {option.name: options[option.name] for option in method.options}
    per_expert_genes = [g for g in method.genes if g not in method.shared_genes]
    if recipe.groups == ("all",):
        models = [{"model": resolved[e.name], "parameters": {g: _value(e, g, "all") for g in per_expert_genes}}
                  for e in recipe.experts]
        if method.shared_genes:  # mergekit lists the base as a model and takes the genes once, for the merge
            models = [{"model": resolved[BASE]}, {"model": resolved[recipe.experts[0].name]}]
            shared.update({g: _value(recipe.experts[0], g, "all") for g in method.shared_genes})
        config["models"] = models
    else:
        config["slices"] = _slices(recipe, num_layers, resolved, per_expert_genes, method.shared_genes, method.needs_base)
    config["parameters"] = shared
    return config


def _paths(recipe: MergeRecipe, overrides: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if recipe.base_uri is not None:
        out[BASE] = overrides.get(BASE) or model_path(recipe.base_uri)
    for expert in recipe.experts:
        path = overrides.get(expert.name) or model_path(expert.uri)
        if BASE in out and expert.name not in overrides and Path(path).is_dir() and is_lora_dir(Path(path)):
            path = f"{out[BASE]}+{path}"
        out[expert.name] = path
    if recipe.layer_path is not None:
        for name, uri in recipe.layer_path.sources.items():
            out.setdefault(name, overrides.get(name) or model_path(uri))
    out.update({k: v for k, v in overrides.items() if k not in out})
    return out


def _value(expert, gene: str, group: str) -> float:
    return float(expert.value(gene, group, 1.0 if gene == "density" else None))


def _block_ranges(groups: tuple[str, ...], num_layers: int) -> list[tuple[str, int, int]]:
    """(block group, first layer, end layer) of each contiguous run of layers sharing a group."""
    runs: list[tuple[str, int, int]] = []
    for layer in range(num_layers):
        group = group_of(f"model.layers.{layer}.mlp.down_proj.weight", groups, num_layers).split(".")[0]
        if runs and runs[-1][0] == group:
            runs[-1] = (group, runs[-1][1], layer + 1)
        else:
            runs.append((group, layer, layer + 1))
    return runs


def _filtered(values: dict[str, float], split: bool) -> list[dict[str, Any]]:
    """A first-match-wins filter list equivalent to group_of for one block group."""
    entries: list[dict[str, Any]] = []
    if split:
        entries += [{"filter": hint, "value": values["attn"]} for hint in _ATTN_HINTS]
    entries.append({"filter": _LAYER_FILTER, "value": values["block"]})
    entries += [{"filter": hint, "value": values["embed"]} for hint in _EMBED_HINTS]
    entries.append({"value": values["head"]})
    return entries


def _group_values(expert, gene: str, block: str, groups: tuple[str, ...]) -> dict[str, float]:
    split = f"{block}.attn" in groups
    return {
        "attn": _value(expert, gene, f"{block}.attn") if split else 0.0,
        "block": _value(expert, gene, f"{block}.mlp" if split else block),
        "embed": _value(expert, gene, "embed"),
        "head": _value(expert, gene, "head"),
    }


def _slices(recipe: MergeRecipe, num_layers: int, paths: dict[str, str], genes: list[str], shared_genes: tuple[str, ...],
            with_base: bool) -> list[dict]:
    slices = []
    for block, start, end in _block_ranges(recipe.groups, num_layers):
        split = f"{block}.attn" in recipe.groups
        sources: list[dict[str, Any]] = []
        if with_base:
            sources.append({"model": paths[BASE], "layer_range": [start, end]})
        for expert in recipe.experts:
            source: dict[str, Any] = {"model": paths[expert.name], "layer_range": [start, end]}
            if genes:
                source["parameters"] = {g: _filtered(_group_values(expert, g, block, recipe.groups), split) for g in genes}
            sources.append(source)
        piece: dict[str, Any] = {"sources": sources}
        if shared_genes:
            piece["parameters"] = {g: _filtered(_group_values(recipe.experts[0], g, block, recipe.groups), split)
                                   for g in shared_genes}
        slices.append(piece)
    return slices


def _path_config(recipe: MergeRecipe, paths: dict[str, str]) -> dict[str, Any]:
    path = recipe.layer_path
    assert path is not None
    if MERGED in path.models:
        raise LayerPathError(
            "a path over this recipe's own merge is two mergekit runs: export the merge first, then use it as a path model"
        )
    options = method_options(recipe)
    slices = []
    for hop, cumulative in zip(path.hops, cumulative_scales(path)):
        source: dict[str, Any] = {"model": paths[hop.model], "layer_range": [hop.layer, hop.layer + 1]}
        if cumulative != 1.0:
            targets = sorted({s.rsplit(".", 1)[0] for s in FOLD_SUFFIXES})
            source["parameters"] = {"scale": [{"filter": t, "value": 1.0 / cumulative} for t in targets] + [{"value": 1.0}]}
        slices.append({"sources": [source]})
    config: dict[str, Any] = {"merge_method": "passthrough", "slices": slices}
    if options["compute_dtype"] is not None:
        config["dtype"] = str(options["compute_dtype"]).removeprefix("torch.")
    if options["out_dtype"] is not None:
        config["out_dtype"] = str(options["out_dtype"]).removeprefix("torch.")
    return config
