"""A linear / task-arithmetic candidate over LoRA experts, expressed as one combined LoRA adapter.

For task arithmetic, W′ = W + c·Σᵢ wᵢ·sᵢ·BᵢAᵢ with c = λ (÷ Σwᵢ when normalising); linear over LoRA
experts is the same with c = 1/Σwᵢ, and is low-rank only when it normalises (otherwise the base itself
is scaled by Σwᵢ). Stacking the factors — A = [A₁; A₂; …], B = [c·w₁·s₁·B₁, c·w₂·s₂·B₂, …] — gives one
adapter of rank Σrᵢ whose B·A is exactly that sum, so a server hosting adapters can serve every
candidate over one resident base. Sparsifying methods (ties, dare) are not low-rank and are refused.

`adapter_refusal` / `adapter_servable` apply the same rule to a MergeSearch spec, so evaluation pods know
before any merge whether a server can host the search's candidates as adapters over the base.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..models.checkpoint import Checkpoint, TensorSource
from ..models.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, LoraAdapter, LoraExpert
from .adapter_rules import low_rank_refusal
from .apply import RecipeError, expert_params, method_options
from .export import _copy_tokenizer
from .groups import group_of
from .methods import get_method
from .recipe import MergeRecipe
from .task_arithmetic import NORMALIZE_EPS

def adapter_coefficients(recipe: MergeRecipe, group: str) -> list[float]:
    """cᵢ such that the merged update of a tensor in `group` is Σᵢ cᵢ·sᵢ·BᵢAᵢ."""
    method = get_method(recipe.method)
    options = method_options(recipe)
    weights = [p["weight"] for p in expert_params(recipe, method, group)]
    total = sum(weights)
    if not method.needs_base:  # linear mixes the models: its update is low-rank only as a weighted mean
        if options["normalize"]:
            return [w / total for w in weights]
        if abs(total - 1.0) > 1e-12:
            raise RecipeError(
                f"recipe options.normalize: linear without normalize scales the base by Σw = {total:g}, not a low-rank "
                "update — set normalize: true or use task_arithmetic"
            )
        return weights
    refusal = low_rank_refusal(recipe.method, options["normalize"], "recipe ")  # linear was settled above
    if refusal is not None:
        raise RecipeError(refusal)
    divisor = total if options["normalize"] and abs(total) >= NORMALIZE_EPS else 1.0
    return [options["lambda"] * w / divisor for w in weights]


def combined_adapter(recipe: MergeRecipe, adapters: dict[str, LoraAdapter], num_layers: int, out_dir: Path) -> Path:
    """Write the candidate as one PEFT adapter (rank = the sum of the experts' ranks per module)."""
    missing = [e.name for e in recipe.experts if e.name not in adapters]
    if missing:
        raise RecipeError(f"recipe expert {missing[0]!r} has no LoRA adapter — a combined adapter needs every expert as LoRA")
    sources = [adapters[e.name] for e in recipe.experts]
    fan = {s.adapter_config.get("fan_in_fan_out", False) for s in sources}
    if len(fan) > 1:
        raise RecipeError("the experts' adapters disagree on fan_in_fan_out; they cannot be stacked")
    targets = list(dict.fromkeys(t for s in sources for t in s.targets))
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    for target in targets:
        coefficients = adapter_coefficients(recipe, group_of(target, recipe.groups, num_layers))
        a_parts, b_parts = [], []
        for source, c in zip(sources, coefficients):
            if target not in source.modules:
                continue
            a, b = source.factors(target)
            a_parts.append(a.float())
            b_parts.append(b.float() * (c * source.modules[target].scaling))
        module = target.removesuffix(".weight")
        tensors[f"base_model.model.{module}.lora_A.weight"] = torch.cat(a_parts, dim=0).contiguous()
        tensors[f"base_model.model.{module}.lora_B.weight"] = torch.cat(b_parts, dim=1).contiguous()
        ranks[module] = sum(p.shape[0] for p in a_parts)
    rank = max(ranks.values())
    patterns = {re.escape(m): r for m, r in ranks.items() if r != rank}
    config = dict(sources[0].adapter_config)
    config.update(
        r=rank, lora_alpha=rank, use_rslora=False, rank_pattern=patterns, alpha_pattern=patterns,
        target_modules=sorted({m.rsplit(".", 1)[-1] for m in ranks}), lora_dropout=0.0, fan_in_fan_out=fan.pop(),
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (out_dir / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    (out_dir / "evomerge_recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))
    return out_dir


def recipe_adapter(recipe: MergeRecipe, base: Checkpoint | None, inputs: dict[str, TensorSource], out_dir: Path) -> Path:
    """The recipe as one combined adapter (with the base's tokenizer, so the directory scores on its own).

    `base` and `inputs` come from `open_recipe_inputs`; every expert must have opened as a LoRA adapter
    over that base (LoraExpert checks the factors' shapes against the base tensors).
    """
    if recipe.layer_path is not None:
        raise RecipeError("recipe layerPath: a data-flow candidate runs whole layers and cannot be one adapter — "
                          "merge it into a checkpoint (drop --adapter)")
    if base is None:
        raise RecipeError("recipe baseUri: a combined adapter is applied over the base model — the recipe needs baseUri")
    for i, expert in enumerate(recipe.experts):
        if not isinstance(inputs.get(expert.name), LoraExpert):
            raise RecipeError(f"recipe experts[{i}] {expert.name!r} ({expert.uri}) is a full checkpoint, not a LoRA "
                              "adapter — a combined adapter needs every expert as LoRA over the base (drop --adapter)")
    adapters = {name: source.adapter for name, source in inputs.items() if isinstance(source, LoraExpert)}
    num_layers = int(base.config().get("num_hidden_layers", 1))
    out = combined_adapter(recipe, adapters, num_layers, out_dir)
    _copy_tokenizer(base, out)
    return out
