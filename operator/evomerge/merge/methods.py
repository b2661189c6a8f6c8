"""Merge methods as a registry of small pure functions, with mergekit 0.1.5's names and semantics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

# (base tensor or None, expert tensors, per-expert parameters, global options) -> merged tensor
MethodFn = Callable[[torch.Tensor | None, list[torch.Tensor], list[dict[str, float]], dict], torch.Tensor]


@dataclass(frozen=True)
class MergeMethod:
    name: str
    fn: MethodFn
    needs_base: bool
    genes: tuple[str, ...]
    normalize_default: bool


METHODS: dict[str, MergeMethod] = {}


def register(name: str, *, needs_base: bool, genes: tuple[str, ...], normalize_default: bool):
    def wrap(fn: MethodFn) -> MethodFn:
        METHODS[name] = MergeMethod(name, fn, needs_base, genes, normalize_default)
        return fn

    return wrap


def get_method(name: str) -> MergeMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"merge method {name!r} is not implemented; known: {', '.join(sorted(METHODS))}") from None


@register("linear", needs_base=False, genes=("weight",), normalize_default=True)
def linear(base, experts, params, options):
    """Σ wᵢθᵢ (÷ Σ wᵢ when normalizing), accumulated in fp32 as mergekit 0.1.5 does."""
    acc_dtype = torch.float64 if experts[0].dtype == torch.float64 else torch.float32
    weights = [p["weight"] for p in params]
    out = torch.zeros_like(experts[0], dtype=acc_dtype)
    for w, tensor in zip(weights, experts):
        out.add_(tensor.to(acc_dtype), alpha=w)
    if options.get("normalize", True):
        out.div_(sum(weights))
    return out.to(experts[0].dtype)


@register("task_arithmetic", needs_base=True, genes=("weight",), normalize_default=False)
def task_arithmetic(base, experts, params, options):
    """b + λ·Σ wᵢ(θᵢ − b), optionally ÷ Σ wᵢ; arithmetic in the merge dtype, result in the base dtype."""
    dtype = options.get("compute_dtype") or base.dtype
    b = base.to(dtype)
    weights = [p["weight"] for p in params]
    delta = torch.zeros_like(b)
    for w, tensor in zip(weights, experts):
        delta.add_((tensor.to(dtype) - b) * w)
    if options.get("normalize", False):
        total = sum(weights)
        delta.div_(total if abs(total) >= 1e-8 else 1.0)
    return (b + delta * options.get("lambda", 1.0)).to(base.dtype)
