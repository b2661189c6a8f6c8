"""Layer groups: which parameter set a tensor uses, from its name and the model's depth."""

from __future__ import annotations

import re

_BLOCK = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_EMBED_HINTS = ("embed_tokens", "wte", "word_embeddings", "embed_in")
_ATTN_HINTS = ("self_attn", "attention", "input_layernorm", "attn")


def group_names(granularity: str, num_layers: int, layer_groups: int = 1, split_modules: bool = False) -> tuple[str, ...]:
    if granularity == "model":
        return ("all",)
    count = num_layers if granularity == "layers" else min(layer_groups, num_layers)
    blocks: list[str] = []
    for i in range(count):
        blocks.extend([f"blocks{i}.attn", f"blocks{i}.mlp"] if split_modules else [f"blocks{i}"])
    return ("embed", *blocks, "head")


def group_of(tensor: str, groups: tuple[str, ...], num_layers: int) -> str:
    """The group a tensor belongs to; embeddings and the head (with the final norm) are groups of their own."""
    if groups == ("all",):
        return "all"
    match = _BLOCK.search(tensor)
    if match is None:
        return "embed" if any(h in tensor for h in _EMBED_HINTS) else "head"
    block_groups = sorted({g.split(".")[0] for g in groups if g.startswith("blocks")}, key=lambda g: int(g[6:]))
    index = int(match.group(1)) * len(block_groups) // num_layers
    name = block_groups[index]
    if f"{name}.attn" in groups:
        return f"{name}.attn" if any(h in tensor for h in _ATTN_HINTS) else f"{name}.mlp"
    return name
