"""Deterministic CPU training of the zoo's base model, experts and LoRA adapters."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .skills import ANSWER_END, Example

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Schedule:
    steps: int
    batch_size: int
    lr: float
    warmup: int = 0
    weight_decay: float = 0.0
    # "adamw" moves every weight by about lr; "sgd" (with momentum) concentrates the change in the
    # few directions the skill's gradient needs, which keeps experts' task vectors additive.
    optimizer: str = "adamw"
    momentum: float = 0.9


def encode(tokenizer, examples: list[Example]) -> dict[str, torch.Tensor]:
    """Right-padded ``<s> prompt answer \\n`` rows; the loss covers the answer and its newline only."""
    rows, labels = [], []
    for ex in examples:
        prompt_ids = tokenizer(ex.prompt)["input_ids"]
        answer_ids = tokenizer(ex.answer + ANSWER_END, add_special_tokens=False)["input_ids"]
        rows.append(prompt_ids + answer_ids)
        labels.append([IGNORE_INDEX] * len(prompt_ids) + answer_ids)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    label_ids = torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for lab in labels])
    return {"input_ids": input_ids, "attention_mask": attention, "labels": label_ids}


def train(model: torch.nn.Module, tokenizer, batches: Iterator[list[Example]], schedule: Schedule,
          seed: int, progress: Callable[[int, float], None] | None = None) -> float:
    """AdamW with linear warm-up and cosine decay; returns the mean loss of the last tenth of steps."""
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if schedule.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=schedule.lr, momentum=schedule.momentum,
                                                     weight_decay=schedule.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=schedule.weight_decay,
                                betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < schedule.warmup:
            return (step + 1) / schedule.warmup
        done = (step - schedule.warmup) / max(1, schedule.steps - schedule.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * done))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    tail: list[float] = []
    for step in range(schedule.steps):
        batch = encode(tokenizer, next(batches))
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step >= schedule.steps - max(1, schedule.steps // 10):
            tail.append(loss.item())
        if progress is not None and (step + 1) % max(50, schedule.steps // 10) == 0:
            progress(step + 1, loss.item())
    model.eval()
    return sum(tail) / len(tail)


def example_stream(draw_batch: Callable[[random.Random, int], list[Example]], batch_size: int,
                   seed: int, exclude: frozenset[str] = frozenset()) -> Iterator[list[Example]]:
    """Endless batches of fresh examples; prompts in ``exclude`` (the evaluation sets) never appear."""
    rng = random.Random(seed)
    while True:
        batch: list[Example] = []
        while len(batch) < batch_size:
            drawn = draw_batch(rng, batch_size - len(batch))
            batch += [ex for ex in drawn if ex.prompt not in exclude]
        yield batch


def single_skill_batches(draw: Callable[[random.Random], Example]):
    """Adapts a one-example drawer to ``example_stream``."""
    return lambda rng, size: [draw(rng) for _ in range(size)]
