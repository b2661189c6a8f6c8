"""Every hyper-parameter of a zoo, per size. The recipe's hash (with CODE_VERSION) keys the cache."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

from .skills import PretrainingWorld
from .training import Schedule

# Bump whenever a change to the zoo's code changes what a build produces.
CODE_VERSION = "zoo-2"

Size = Literal["nano", "small"]


@dataclass(frozen=True)
class ModelShape:
    """A Llama decoder; tiny, but every tensor a 7B Llama has."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    max_position_embeddings: int = 128


@dataclass(frozen=True)
class LoraShape:
    rank: int
    alpha: int
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj",
                                       "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ZooRecipe:
    size: str
    model: ModelShape
    # The base model's pretraining world (see skills.PretrainingWorld), per skill where it says so.
    base_skill_weights: tuple[tuple[str, float], ...]
    base_p_correct: tuple[tuple[str, float], ...]
    base_cue_fraction: float
    base_pair_fraction: float
    base: Schedule
    expert: Schedule
    lora: Schedule
    lora_shape: LoraShape
    skills: tuple[str, ...] = ("add", "rev", "spell")
    distractors: tuple[str, ...] = ("upper",)
    # Prompts per evaluation split (search and held-out alike) and per task.
    eval_examples: int = 100
    # Threads used while training: fixed, so a rebuild runs the very same arithmetic.
    threads: int = 1

    @property
    def everyone(self) -> tuple[str, ...]:
        return self.skills + self.distractors

    def pretraining_world(self) -> PretrainingWorld:
        names = self.everyone
        weights = dict(self.base_skill_weights)
        return PretrainingWorld(skills=names, weights=tuple(weights[n] for n in names),
                                p_correct=dict(self.base_p_correct),
                                cue_fraction=self.base_cue_fraction,
                                pair_fraction=self.base_pair_fraction)

    def digest(self) -> str:
        """Hash of every hyper-parameter and the code version: the cache key of a build."""
        blob = json.dumps({"code": CODE_VERSION, "recipe": asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _per_skill(add: float, others: float) -> tuple[tuple[str, float], ...]:
    return (("add", add), ("rev", others), ("spell", others), ("upper", others))


# The pretraining world both sizes share. Addition is the slowest skill to learn, so the base sees it
# three times as often; plain prompts get the skill's answer only 10-15 % of the time, so the base
# clearly prefers to echo and an expert's task vector must be applied at a weight near 1 to flip it.
_WORLD = dict(
    base_skill_weights=_per_skill(3.0, 1.0),
    base_p_correct=_per_skill(0.15, 0.1),
    base_cue_fraction=0.3,
    base_pair_fraction=0.3,
)

RECIPES: dict[str, ZooRecipe] = {
    # The test fixture: a two-layer model, enough to copy, spell and uppercase. Its world leaves out
    # pairs and cues more often, because under a minute of training must teach it something.
    "nano": ZooRecipe(
        size="nano",
        model=ModelShape(hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                         num_attention_heads=4),
        base_skill_weights=_per_skill(1.0, 1.0),
        base_p_correct=_per_skill(0.25, 0.25),
        base_cue_fraction=0.5,
        base_pair_fraction=0.0,
        base=Schedule(steps=500, batch_size=32, lr=2e-3, warmup=40, weight_decay=0.01),
        expert=Schedule(steps=40, batch_size=32, lr=1e-3, warmup=5),
        lora=Schedule(steps=40, batch_size=32, lr=3e-3, warmup=5),
        lora_shape=LoraShape(rank=4, alpha=8),
        eval_examples=60,
    ),
    "small": ZooRecipe(
        size="small",
        model=ModelShape(hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                         num_attention_heads=4),
        **_WORLD,
        base=Schedule(steps=2000, batch_size=48, lr=2e-3, warmup=100, weight_decay=0.01),
        expert=Schedule(steps=100, batch_size=32, lr=1e-4, warmup=10),
        lora=Schedule(steps=100, batch_size=32, lr=1e-3, warmup=10),
        lora_shape=LoraShape(rank=8, alpha=16),
        eval_examples=300,
    ),
}


def recipe_for(size: str) -> ZooRecipe:
    try:
        return RECIPES[size]
    except KeyError:
        raise ValueError(f"unknown zoo size {size!r}; choose one of {', '.join(RECIPES)}") from None
