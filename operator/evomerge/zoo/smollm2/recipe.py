"""Every hyper-parameter of the SmolLM2 world. The recipe's hash (with CODE_VERSION) keys the cache."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from ..recipe import LoraShape
from ..training import Schedule

# Bump whenever a change to this world's code changes what a build produces.
CODE_VERSION = "smollm2-1"
WORLD = "smollm2"


@dataclass(frozen=True)
class WorldRecipe:
    skills: tuple[str, ...]
    distractors: tuple[str, ...]
    # LoRA experts (the EvoGM setting): adapters on the attention and MLP projections of ``lora_layers``.
    lora: Schedule
    lora_shape: LoraShape
    lora_layers: tuple[int, ...]
    # Full fine-tunes of a few layers: every weight of ``full_layers`` trains, the rest stays the base's.
    full: Schedule
    full_layers: tuple[int, ...]
    # Prompts per evaluation split (search and held-out alike) and per skill.
    eval_examples: int
    threads: int = 1

    @property
    def everyone(self) -> tuple[str, ...]:
        return self.skills + self.distractors

    def digest(self) -> str:
        """Hash of every hyper-parameter and the code version: the cache key of a build."""
        blob = json.dumps({"code": CODE_VERSION, "recipe": asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# Sized for two shared CPU cores: short prompts, small batches, few steps, and gradients that stop at the lowest
# trained layer (the top half for LoRA, the top four layers for full fine-tunes) — a 135M model learns a format
# from a few hundred examples.
RECIPE = WorldRecipe(
    skills=("sum_words", "reverse", "iso_date"),
    distractors=("upper",),
    lora=Schedule(steps=48, batch_size=8, lr=2e-3, warmup=4),
    lora_shape=LoraShape(rank=8, alpha=16),
    lora_layers=tuple(range(15, 30)),
    full=Schedule(steps=48, batch_size=8, lr=1e-4, warmup=4),
    full_layers=(26, 27, 28, 29),
    eval_examples=40,
)
