"""The resident merger: experts held in memory, a candidate written into a live model in place."""

from __future__ import annotations

import torch

from ..models.checkpoint import Checkpoint
from .apply import merge_tensor, method_options
from .recipe import MergeRecipe


class ResidentMerger:
    """Loads base and experts once; `merge_into` overwrites a model's parameters for each candidate.

    Re-merging in place keeps one model object alive across candidates, so evaluation engines never
    reload weights or rebuild tasks between candidates.
    """

    def __init__(self, base: Checkpoint | None, experts: dict[str, Checkpoint], num_layers: int, device: str = "cpu"):
        self.num_layers = num_layers
        self.device = device
        self.base = base.read_all(device) if base is not None else None
        self.experts = {name: ckpt.read_all(device) for name, ckpt in experts.items()}

    @torch.no_grad()
    def merge_into(self, recipe: MergeRecipe, target: dict[str, torch.Tensor]) -> None:
        """Write the merged tensors into `target` (for example a model's state_dict(), whose tensors alias its weights)."""
        options = method_options(recipe)
        for name, out in target.items():
            reference = self.base if self.base is not None else self.experts[recipe.experts[0].name]
            if name not in reference:
                continue
            inputs = [self.experts[e.name][name] for e in recipe.experts]
            base = self.base[name] if self.base is not None else None
            out.copy_(merge_tensor(recipe, name, base, inputs, self.num_layers, options))
