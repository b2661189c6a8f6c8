"""Every hyper-parameter of the SmolLM2 world. The recipe's hash (with CODE_VERSION) keys the cache."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from ..recipe import LoraShape
from ..training import Schedule

# Bump whenever a change to this world's code changes what a build produces.
CODE_VERSION = "smollm2-2"
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
    # Prompts per skill (and distractor) in the search split, which scores every candidate, and in the held-out
    # split, which scores only the references and each run's best merge.
    search_examples: int
    heldout_examples: int
    # Step counts for the experts their schedule's ``steps`` are too few for, by name; the rest train for those.
    lora_steps: tuple[tuple[str, int], ...] = ()
    full_steps: tuple[tuple[str, int], ...] = ()
    threads: int = 1

    def __post_init__(self) -> None:
        for field, steps in (("lora_steps", self.lora_steps), ("full_steps", self.full_steps)):
            unknown = sorted(set(dict(steps)) - set(self.everyone))
            if unknown:
                raise ValueError(f"{field} names {', '.join(unknown)}, which the world does not train; "
                                 f"name one of {', '.join(self.everyone)}")

    @property
    def everyone(self) -> tuple[str, ...]:
        return self.skills + self.distractors

    def lora_for(self, name: str) -> Schedule:
        """The schedule of ``name``'s LoRA adapter: ``lora``, for the steps ``lora_steps`` gives it if any."""
        return replace(self.lora, steps=dict(self.lora_steps).get(name, self.lora.steps))

    def full_for(self, name: str) -> Schedule:
        """The schedule of ``name``'s full fine-tune: ``full``, for the steps ``full_steps`` gives it if any."""
        return replace(self.full, steps=dict(self.full_steps).get(name, self.full.steps))

    def digest(self) -> str:
        """Hash of every hyper-parameter and the code version: the cache key of a build."""
        blob = json.dumps({"code": CODE_VERSION, "recipe": asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# Sized for two shared CPU cores: short prompts, small batches, few steps, and gradients that stop at the lowest
# trained layer (the top half for LoRA, the top four layers for full fine-tunes) — a 135M model learns a format
# from a few hundred examples. Arithmetic in words is the exception: its 48-step LoRA expert answered 17.5 % of the
# held-out prompts, a 300-step one at the same rate 80 % (of 40, addends then 0-20); with addends up to 30 it trains
# 400. A step took 0.86 s for LoRA and 0.65 s for a full fine-tune (1 thread, load 3 on 2 cores), so the build's
# 544 + 544 steps take about 15 minutes on a quiet machine, 30 on a busy one.
#
# The split sizes make the target "held-out within 3 points of search" measurable. The multi-skill score averages
# three skills, so its sampling sd on n prompts per skill is sqrt(Σ p(1-p)) / (3 √n); at the evolved merges' scores
# (about 95 % on reverse and iso_date, up to 50 % on sum_words) Σ p(1-p) ≈ 0.35, and the gap between two disjoint
# splits has sd 0.196 · sqrt(1/n_search + 1/n_heldout): 4.4 points at 40 / 40 prompts (a merge that generalises
# perfectly misses the target half the time), 1.7 points at 200 / 400 (8 % of the time). The search split sets the
# cost — every candidate answers 3 × 200 prompts plus the general check's 120 choices, 720 requests where 40 prompts
# made 240 — so it stays at 200; the held-out split, scored a few times per run, takes the larger share.
RECIPE = WorldRecipe(
    skills=("sum_words", "reverse", "iso_date"),
    distractors=("upper",),
    lora=Schedule(steps=48, batch_size=8, lr=2e-3, warmup=4),
    lora_shape=LoraShape(rank=8, alpha=16),
    lora_layers=tuple(range(15, 30)),
    full=Schedule(steps=48, batch_size=8, lr=1e-4, warmup=4),
    full_layers=(26, 27, 28, 29),
    search_examples=200,
    heldout_examples=400,
    lora_steps=(("sum_words", 400),),
    full_steps=(("sum_words", 400),),
)
