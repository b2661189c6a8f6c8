"""Exporting a recipe as a standard Hugging Face checkpoint, streaming tensor by tensor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..models.checkpoint import Checkpoint
from .apply import merge_tensor, method_options
from .recipe import MergeRecipe

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "generation_config.json", "chat_template.jinja",
)
DEFAULT_SHARD_BYTES = 2 * 1024**3


def export_merge(
    recipe: MergeRecipe,
    base: Checkpoint | None,
    experts: dict[str, Checkpoint],
    out_dir: Path,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> Path:
    """Write the merged model; only the tensors of one name (one per input) are in memory at a time."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = base if base is not None else experts[recipe.experts[0].name]
    num_layers = int(reference.config().get("num_hidden_layers", 1))
    options = method_options(recipe)
    shards: list[dict[str, torch.Tensor]] = [{}]
    shard_size = 0
    for name in reference.names:
        merged = merge_tensor(
            recipe,
            name,
            base.read(name) if base is not None else None,
            [experts[e.name].read(name) for e in recipe.experts],
            num_layers,
            options,
        ).contiguous()
        size = merged.numel() * merged.element_size()
        if shard_size and shard_size + size > shard_bytes:
            shards.append({})
            shard_size = 0
        shards[-1][name] = merged
        shard_size += size
    _write_shards(shards, out_dir)
    shutil.copy2(reference.root / "config.json", out_dir / "config.json")
    for file in TOKENIZER_FILES:
        if (reference.root / file).exists():
            shutil.copy2(reference.root / file, out_dir / file)
    (out_dir / "evomerge_recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))
    return out_dir


def _write_shards(shards: list[dict[str, torch.Tensor]], out_dir: Path) -> None:
    if len(shards) == 1:
        save_file(shards[0], str(out_dir / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map: dict[str, str] = {}
    total = 0
    for i, shard in enumerate(shards, start=1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out_dir / file), metadata={"format": "pt"})
        for name, tensor in shard.items():
            weight_map[name] = file
            total += tensor.numel() * tensor.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
