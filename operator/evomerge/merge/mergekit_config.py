"""mergekit 0.1.5's config format, both ways: reproduce any recipe with `mergekit-yaml`, or read a config
(to seed a search, or merge it with `evomerge merge`).

Recipe → mergekit: layer groups become `slices` (one per contiguous block group). Inside a slice, parameters
are filter lists whose first match wins, mirroring `group_of`: attention hints → the attention value (when
modules are split), `layers.` → the block value, embedding hints → the embedding group, anything else (final
norm, head) → the head group. mergekit resolves embeddings against the first slice and the final norm and
head against the last, and the filters route each to its own group. A layer path becomes a `passthrough`
merge with one slice per hop, the hop scales folded into the output projections through the per-input
`scale` parameter.

mergekit → recipe reads a config as plain dicts, so mergekit itself is not needed at run time: each value is
resolved per layer group the way mergekit resolves it, then grouped as coarsely as merge/groups.py allows
without changing any value.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..catalogue.methods import GENES, METHODS, Method
from ..models.lora import is_lora_dir
from ..models.uris import parse_uri
from .apply import method_options
from .dataflow import FOLD_SUFFIXES, cumulative_scales
from .groups import _ATTN_HINTS, _EMBED_HINTS, group_of
from .layer_path import BASE, MERGED, LayerPathError
from .methods import get_method
from .recipe import ExpertWeights, MergeRecipe

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


# mergekit's method names, each with its catalogue entry (whose options are the global ones mergekit reads;
# evomerge's own options — seed, tie_order — are not config).
MERGEKIT_METHODS = {m.mergekit_name: m for m in METHODS.values()}
IGNORED_PARAMETERS = ("int8_mask",)  # memory-only in mergekit; the result does not depend on it
# A mergekit config promises mergekit's bytes: TIES keeps ties at the density cut in torch's order (merge/sparsify.py).
MERGEKIT_ORDER = {"tie_order": "mergekit"}
# Representative tensor names (Llama naming, which merge/groups.py follows) used to read a config's
# filters back into layer groups; group_of itself says which half of a block each one belongs to.
_LAYER_PROBES = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                 "self_attn.o_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight",
                 "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")
_SPLIT_GROUPS = ("embed", "blocks0.attn", "blocks0.mlp", "head")
_ATTN_PROBES = tuple(p for p in _LAYER_PROBES if group_of(f"model.layers.0.{p}", _SPLIT_GROUPS, 1) == "blocks0.attn")
_MLP_PROBES = tuple(p for p in _LAYER_PROBES if group_of(f"model.layers.0.{p}", _SPLIT_GROUPS, 1) == "blocks0.mlp")
_EMBED_PROBES = ("model.embed_tokens.weight",)
_HEAD_PROBES = ("model.norm.weight", "lm_head.weight")
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class MergekitConfigError(ValueError):
    """A recipe mergekit cannot express, or a mergekit config evomerge cannot read."""


# ---- recipe → mergekit, with the depth and YAML ---------------------------------------------------------
def mergekit_config_for(recipe: MergeRecipe, model_dir: Path) -> dict[str, Any]:
    """to_mergekit_config's config for a recipe, with the depth read from a checkpoint of its architecture."""
    config_file = Path(model_dir) / "config.json"
    layers = json.loads(config_file.read_text()).get("num_hidden_layers") if config_file.exists() else None
    if not layers:
        raise MergekitConfigError(f"{config_file} has no num_hidden_layers; the layer ranges need the model depth")
    return recipe_to_mergekit(recipe, int(layers))


def recipe_to_mergekit(recipe: MergeRecipe, num_layers: int) -> dict[str, Any]:
    """to_mergekit_config, its refusals as MergekitConfigError."""
    try:
        return to_mergekit_config(recipe, num_layers)
    except LayerPathError as exc:
        raise MergekitConfigError(str(exc)) from None


def mergekit_yaml(config: dict[str, Any]) -> str:
    """YAML as mergekit writes it (key order kept, number lists inline)."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=120)


# ---- mergekit → recipe ------------------------------------------------------------------------------
def from_mergekit_config(config: dict[str, Any], num_layers: int | None = None) -> MergeRecipe:
    """The evomerge recipe of a mergekit config (`models:` or contiguous `slices:`), e.g. to seed a search.

    Values are read per layer group the way mergekit resolves them (source > slice > global parameters,
    first matching filter, gradients interpolated over a slice's layers), then grouped as coarsely as
    merge/groups.py allows while keeping every value. Gradients in the `models:` form need `num_layers`.
    """
    method_name = config.get("merge_method")
    if method_name not in MERGEKIT_METHODS:
        raise MergekitConfigError(f"merge_method {method_name!r}: evomerge merges {', '.join(MERGEKIT_METHODS)}")
    method = MERGEKIT_METHODS[method_name]
    if config.get("modules"):
        raise MergekitConfigError("modules: multi-module configs are not supported; use models: or slices:")
    if bool(config.get("models")) == bool(config.get("slices")):
        raise MergekitConfigError("a mergekit config lists exactly one of models: or slices:")
    tokenizer = config.get("tokenizer_source") or (config.get("tokenizer") or {}).get("source")
    if tokenizer not in (None, "base"):
        raise MergekitConfigError(
            f"tokenizer source {tokenizer!r} rebuilds the vocabulary and its embeddings; evomerge merges models that "
            "share the base tokenizer — drop tokenizer_source or use base"
        )
    base = config.get("base_model")
    global_params = config.get("parameters") or {}
    slices = _normalised_slices(config, num_layers)
    depth = slices[-1]["range"][1]
    inputs = [src["model"] for src in slices[0]["sources"]]
    if any([src["model"] for src in s["sources"]] != inputs for s in slices):
        raise MergekitConfigError("slices: every slice must list the same models in the same order")
    expert_models = [m for m in inputs if m != base or not method.needs_base]
    if method.needs_base and base is None:
        raise MergekitConfigError(f"base_model: {method_name} merges task vectors and needs a base model")
    genes = method.shared_genes or _genes(method, slices, global_params, expert_models)
    if method.one_expert and len(expert_models) != 1:
        raise MergekitConfigError(f"{method_name}: list the base model and exactly one other model")

    values = {
        model: {gene: _per_group_values(slices, global_params, model, gene, depth, shared=gene in method.shared_genes)
                for gene in genes}
        for model in expert_models
    }
    groups, depth_groups = _coarsest_groups(values, depth)
    names = _expert_names(expert_models)
    experts = tuple(
        ExpertWeights(names[m], reference_uri(m), {
            gene: _values_by_group(per_layer, groups, depth_groups, depth) for gene, per_layer in values[m].items()
        })
        for m in expert_models
    )
    return MergeRecipe(
        method=method.name,
        base_uri=reference_uri(base) if base and method.needs_base else None,
        experts=experts,
        groups=groups,
        options={**_options(method, global_params, config), **MERGEKIT_ORDER},
    )


def reference_uri(reference: str) -> str:
    """A mergekit model name as an evomerge URI: paths stay paths, `org/name[@rev]` becomes hf://."""
    if "+" in reference:
        raise MergekitConfigError(f"model {reference!r}: LoRA references (model+adapter) are not read; list the adapter as an expert of format lora")
    if reference.startswith(("/", ".", "~")) or Path(reference).expanduser().is_dir():
        return str(Path(reference).expanduser().absolute())
    return f"hf://{reference}"


def _normalised_slices(config: dict[str, Any], num_layers: int | None) -> list[dict[str, Any]]:
    """Slices as {range, sources: [{model, parameters}], parameters}, checked to tile [0, depth)."""
    if config.get("models"):
        gradient = any(_has_gradient(m.get("parameters")) for m in config["models"]) or _has_gradient(config.get("parameters"))
        if gradient and num_layers is None:
            raise MergekitConfigError("a gradient (a list of values over layers) needs the model depth: pass num_layers")
        models = [{"model": str(m["model"]), "parameters": m.get("parameters") or {}} for m in config["models"]]
        base = config.get("base_model")
        if base and base not in [m["model"] for m in models]:
            models.insert(0, {"model": str(base), "parameters": {}})
        return [{"range": (0, num_layers or 1), "sources": models, "parameters": {}}]
    slices = []
    expected_start = 0
    for i, entry in enumerate(config["slices"]):
        ranges = {tuple(src["layer_range"]) for src in entry["sources"]}
        if len(ranges) != 1:
            raise MergekitConfigError(
                f"slices[{i}]: sources take different layer ranges {sorted(ranges)} — a frankenmerge, not a parameter-space merge"
            )
        start, end = ranges.pop()
        if start != expected_start or end <= start:
            raise MergekitConfigError(
                f"slices[{i}]: layer_range [{start}, {end}] does not continue at layer {expected_start} — "
                "evomerge reads slices that tile the model's layers in order"
            )
        expected_start = end
        slices.append({
            "range": (start, end),
            "sources": [{"model": str(src["model"]), "parameters": src.get("parameters") or {}} for src in entry["sources"]],
            "parameters": entry.get("parameters") or {},
        })
    if num_layers is not None and expected_start != num_layers:
        raise MergekitConfigError(f"slices cover layers [0, {expected_start}) but the model has {num_layers} layers")
    return slices


def _has_gradient(parameters: dict[str, Any] | None) -> bool:
    def gradient(setting: Any) -> bool:
        if isinstance(setting, dict):
            return gradient(setting.get("value"))
        if isinstance(setting, list):
            return any(gradient(c.get("value")) if isinstance(c, dict) else True for c in setting)
        return False

    return any(gradient(s) for s in (parameters or {}).values())


def _genes(method: Method, slices: list[dict[str, Any]], global_params: dict[str, Any], models: list[str]) -> tuple[str, ...]:
    """The method's per-model genes the config sets (weight always; density where it sparsifies)."""
    genes = set(method.genes)
    found = set(global_params) & genes
    for s in slices:
        found |= set(s["parameters"]) & genes
        for src in s["sources"]:
            if src["model"] in models:
                unknown = set(src["parameters"]) - {*genes, *IGNORED_PARAMETERS}
                if unknown:
                    raise MergekitConfigError(f"model {src['model']}: parameter(s) {', '.join(sorted(unknown))} are not evolved by evomerge")
                found |= set(src["parameters"]) & genes
    if "weight" not in found:
        raise MergekitConfigError("no weight parameter: every merged model needs a weight")
    return tuple(g for g in method.genes if g in found)


def _per_group_values(
    slices: list[dict[str, Any]], global_params: dict[str, Any], model: str, gene: str, depth: int, shared: bool
) -> dict[str, Any]:
    """{"embed": v, "head": v, "attn": [v per layer], "mlp": [v per layer]} as mergekit would resolve them."""

    def resolve(slice_: dict[str, Any], tensor: str, t: float) -> float:
        scopes = [] if shared else [src["parameters"] for src in slice_["sources"] if src["model"] == model]
        for scope in [*scopes, slice_["parameters"], global_params]:
            if gene in scope:
                value = _evaluate(scope[gene], tensor, t)
                if value is not None:
                    return value
        if gene == "density":
            return 1.0
        raise MergekitConfigError(f"model {model}: no {gene} for tensor {tensor}")

    def probe(slice_: dict[str, Any], names: Iterable[str], t: float, what: str) -> float:
        found = {name: resolve(slice_, name, t) for name in names}
        if len(set(found.values())) > 1:
            raise MergekitConfigError(
                f"model {model}: {gene} differs between tensors of one {what} ({found}) — "
                "evomerge's layer groups are embeddings, attention and MLP of each block, and the head"
            )
        return next(iter(found.values()))

    attn: list[float] = []
    mlp: list[float] = []
    for s in slices:
        start, end = s["range"]
        length = end - start
        for offset in range(length):
            layer = start + offset
            t = offset / (length - 1) if length > 1 else 1.0
            attn.append(probe(s, [f"model.layers.{layer}.{p}" for p in _ATTN_PROBES], t, f"layer {layer}'s attention"))
            mlp.append(probe(s, [f"model.layers.{layer}.{p}" for p in _MLP_PROBES], t, f"layer {layer}'s MLP"))
    return {
        "embed": probe(slices[0], _EMBED_PROBES, 0.0, "embedding"),
        "head": probe(slices[-1], _HEAD_PROBES, 0.0, "head"),
        "attn": attn[:depth],
        "mlp": mlp[:depth],
    }


def _evaluate(setting: Any, tensor: str, t: float) -> float | None:
    """mergekit's evaluate_setting for numeric parameters: first matching filter, gradients interpolated."""
    if isinstance(setting, dict):
        setting = [setting]
    if isinstance(setting, bool):
        return float(setting)
    if isinstance(setting, (int, float, str)):
        return float(setting)
    if isinstance(setting, list):
        if not setting:
            return None
        if all(not isinstance(e, dict) for e in setting):
            values = [float(e) for e in setting]
            scaled = t * (len(values) - 1)
            i0 = int(scaled)
            i1 = min(len(values) - 1, i0 + 1)
            frac = scaled - i0
            return (1 - frac) * values[i0] + frac * values[i1]
        for condition in setting:
            flt = condition.get("filter")
            if flt is None or flt == "*" or flt in tensor:
                return _evaluate(condition["value"], tensor, t)
        return None
    raise MergekitConfigError(f"unexpected parameter setting {setting!r}")


def _coarsest_groups(values: dict[str, dict[str, dict[str, Any]]], depth: int) -> tuple[tuple[str, ...], int]:
    """The fewest layer groups (merge/groups.py's partition) that keep every resolved value exact."""
    per = [v for by_gene in values.values() for v in by_gene.values()]
    split = any(v["attn"] != v["mlp"] for v in per)
    if not split and all(v["embed"] == v["head"] and set(v["mlp"]) == {v["embed"]} for v in per):
        return ("all",), 0
    for count in range(1, depth + 1):
        if all(_constant_within(v[part], count, depth) for v in per for part in ("attn", "mlp")):
            blocks = []
            for i in range(count):
                blocks.extend([f"blocks{i}.attn", f"blocks{i}.mlp"] if split else [f"blocks{i}"])
            return ("embed", *blocks, "head"), count
    raise AssertionError("one group per layer always keeps every value")  # count == depth is exact


def _constant_within(per_layer: list[float], count: int, depth: int) -> bool:
    seen: dict[int, float] = {}
    for layer, value in enumerate(per_layer):
        group = layer * count // depth
        if seen.setdefault(group, value) != value:
            return False
    return True


def _values_by_group(per_layer: dict[str, Any], groups: tuple[str, ...], count: int, depth: int) -> dict[str, float]:
    if groups == ("all",):
        return {"all": per_layer["embed"]}
    out = {"embed": per_layer["embed"]}
    for layer in range(depth):
        block = f"blocks{layer * count // depth}"
        if f"{block}.attn" in groups:
            out.setdefault(f"{block}.attn", per_layer["attn"][layer])
            out.setdefault(f"{block}.mlp", per_layer["mlp"][layer])
        else:
            out.setdefault(block, per_layer["mlp"][layer])
    out["head"] = per_layer["head"]
    return {g: out[g] for g in groups}


def _expert_names(models: list[str]) -> dict[str, str]:
    """Readable, unique expert names from model references (the last path component)."""
    names: dict[str, str] = {}
    for model in models:
        stem = _NAME.sub("-", model.rstrip("/").split("/")[-1].split("@")[0]).strip("-._") or "expert"
        name, n = stem[:60], 2
        while name in names.values():
            name, n = f"{stem[:57]}-{n}", n + 1
        names[model] = name
    return names


def _options(method: Method, global_params: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    known = {*GENES, *(o.name for o in method.options), *IGNORED_PARAMETERS}
    unknown = set(global_params) - known
    if unknown:
        raise MergekitConfigError(f"parameters: {', '.join(sorted(unknown))} not understood for {method.mergekit_name}")
    options: dict[str, Any] = {}
    for option in method.options:
        if option.name in global_params:
            value = global_params[option.name]
            if isinstance(value, (list, dict)):
                raise MergekitConfigError(f"parameters.{option.name}: evomerge takes one value per merge, not a gradient or filters")
            options[option.name] = option.type(value)
    for key in ("dtype", "out_dtype"):
        if config.get(key):
            options[key] = config[key]
    return options


# ---- a mergekit config file ---------------------------------------------------------------------------
def read_mergekit_file(path: Path) -> MergeRecipe:
    """The recipe of a mergekit YAML on disk, its depth read from the base model's (or first model's) config.json
    where that is on this machine (a gradient needs it; slices are checked against it)."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise MergekitConfigError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise MergekitConfigError(f"{path}: not YAML ({exc})") from None
    if not isinstance(config, dict) or "merge_method" not in config:
        raise MergekitConfigError(f"{path}: not a mergekit config (no merge_method)")
    try:
        return from_mergekit_config(config, _depth(config))
    except MergekitConfigError as exc:
        raise MergekitConfigError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MergekitConfigError(f"{path}: malformed mergekit config ({type(exc).__name__}: {exc})") from None


def _depth(config: dict[str, Any]) -> int | None:
    """num_hidden_layers of the base model (or the first listed one) if its files are here, else None."""
    from ..models.uris import UriError, local_path

    reference = _first_model(config)
    if reference is None or "+" in reference:
        return None
    try:
        config_file = local_path(reference_uri(reference)) / "config.json"
    except (UriError, MergekitConfigError):
        return None
    layers = json.loads(config_file.read_text()).get("num_hidden_layers") if config_file.exists() else None
    return int(layers) if layers else None


def _first_model(config: dict[str, Any]) -> str | None:
    if config.get("base_model"):
        return str(config["base_model"])
    for entry in config.get("models") or []:
        return str(entry["model"])
    for entry in config.get("slices") or []:
        for source in entry.get("sources") or []:
            return str(source["model"])
    return None
