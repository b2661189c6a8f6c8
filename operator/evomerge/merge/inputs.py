"""Opening a recipe's inputs from their URIs: full checkpoints, LoRA experts over the base, path models."""

from __future__ import annotations

from pathlib import Path

from ..models.checkpoint import Checkpoint, CheckpointError, TensorSource, open_checkpoint
from ..models.lora import LoraExpert, is_lora_dir, open_lora_adapter
from ..models.uris import local_path
from .layer_path import BASE, MERGED
from .recipe import MergeRecipe


def open_source(root: Path, base: Checkpoint | None, allow_pickle: bool = False) -> TensorSource:
    """A checkpoint directory, or a PEFT LoRA adapter directory seen as full weights over `base`."""
    if is_lora_dir(root):
        if base is None:
            raise CheckpointError(f"{root}: a LoRA expert is a task vector over the base model — the recipe needs baseUri")
        return LoraExpert(base, open_lora_adapter(root, allow_pickle))
    return open_checkpoint(root, allow_pickle)


def open_recipe_inputs(recipe: MergeRecipe, allow_pickle: bool | None = None) -> tuple[Checkpoint | None, dict[str, TensorSource]]:
    """(base, inputs by name) for export_merge / ResidentMerger; pickle only if allowed (else the recipe's allow_pickle option)."""
    allow = bool(recipe.options.get("allow_pickle", False)) if allow_pickle is None else allow_pickle
    base = open_checkpoint(local_path(recipe.base_uri), allow) if recipe.base_uri else None
    inputs: dict[str, TensorSource] = {e.name: open_source(local_path(e.uri), base, allow) for e in recipe.experts}
    if recipe.layer_path is not None:
        for name in recipe.layer_path.models:
            if name in (MERGED, BASE) or name in inputs:
                continue
            uri = recipe.layer_path.sources.get(name)
            if uri is None:
                raise CheckpointError(f"layer path model {name!r} is neither an expert nor the base, and has no URI in its sources")
            inputs[name] = open_source(local_path(uri), base, allow)
    return base, inputs
