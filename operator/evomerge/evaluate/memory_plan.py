"""What an evaluation worker holds in memory, from the checkpoints' sizes — so a search that cannot fit is
refused with the field to change before any pod starts, not discovered as an out-of-memory kill.

A worker holds the inputs the resident merger keeps (the base and one task vector per expert, in the
checkpoint's dtype: (experts + 1) copies of the model), the live merge (one copy), and for a served engine
the server's own copy of the weights plus its KV cache:

- `transformers` on an accelerator keeps everything there while it fits; beyond that it keeps the task
  vectors in host memory and streams each merged tensor to the accelerator (the merge runs on the host).
- A served engine that swaps weights in place (vLLM) needs one copy on the accelerator whatever the number
  of experts: the scorer holds the task vectors and a host copy of the merge, and the pod's memory-backed
  volume holds the first candidate (what a restarted server loads) and the current one.
- A served engine that starts once per candidate (TGI) needs only the server's copy: the merge step streams.

Sizes are the stored tensors' bytes, read from the safetensors headers (no tensor is loaded).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..catalogue.engines import ENGINES, SWAPPING_SERVERS
from ..spec.merge_search import MergeSearchSpec
from .placement import swaps_in_pod

GiB = 1024**3
# Of the accelerator: what the allocator, CUDA context and lm-eval's activations take besides the tensors.
ACCELERATOR_RESERVE = 0.10
# Context assumed for a served engine's KV cache when the model's config names none.
DEFAULT_CONTEXT = 4096
# A quantity as spec/base.QUANTITY_PATTERN admits it: a number, then a binary or decimal suffix or an exponent.
_QUANTITY = re.compile(r"^\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:([KMGTPE]i)|([numkMGTPE])|[eE]([+-]?[0-9]+(?:\.[0-9]*)?))?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def quantity_bytes(quantity: int | str) -> int:
    """A Kubernetes quantity of memory ("80Gi", "64G", "1e9", 512) as bytes."""
    if isinstance(quantity, int):
        return quantity
    match = _QUANTITY.match(quantity.strip())
    if match is None:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity such as 80Gi or 64G")
    number, binary, decimal, exponent = match.groups()
    scale = _BINARY[binary] if binary else _DECIMAL[decimal] if decimal else 10 ** float(exponent) if exponent else 1
    return int(float(number) * scale)


@dataclass(frozen=True)
class ModelSize:
    """What one copy of the model weighs, and what its KV cache costs per token of context."""

    weight_bytes: int
    kv_bytes_per_token: int
    context: int

    @classmethod
    def of(cls, model_dir: Path, allow_pickle: bool = False) -> "ModelSize":
        """From a checkpoint directory: the safetensors headers (sizes as stored) and config.json."""
        from ..models.checkpoint import open_checkpoint

        checkpoint = open_checkpoint(model_dir, allow_pickle)
        total, itemsize = 0, 2
        for name in checkpoint.names:
            shape, dtype = checkpoint.info(name)
            total += math.prod(shape) * dtype.itemsize
            itemsize = dtype.itemsize if dtype.is_floating_point else itemsize
        config = checkpoint.config()
        layers = int(config.get("num_hidden_layers", 1))
        heads = int(config.get("num_attention_heads", 1))
        head_dim = int(config.get("head_dim") or int(config.get("hidden_size", heads)) // heads)
        kv_heads = int(config.get("num_key_value_heads") or heads)
        context = int(config.get("max_position_embeddings") or DEFAULT_CONTEXT)
        return cls(total, 2 * layers * kv_heads * head_dim * itemsize, min(context, DEFAULT_CONTEXT))


@dataclass(frozen=True)
class MemoryPlan:
    """Where the worker's bytes go. `parts` are (place, what, bytes); place is "accelerator", "host" or "volume"
    (the pod's memory-backed emptyDir, which counts against its memory too)."""

    merge_on: Literal["accelerator", "host"]
    parts: tuple[tuple[str, str, int], ...]
    problems: tuple[str, ...] = field(default=())

    def total(self, *places: str) -> int:
        return sum(n for place, _, n in self.parts if place in places)

    def describe(self, *places: str) -> str:
        return ", ".join(f"{what} {n / GiB:.1f} GiB" for place, what, n in self.parts if place in places)


def plan_memory(spec: MergeSearchSpec, size: ModelSize, accelerator_bytes: int | None = None,
                on_accelerator: bool | None = None, engine: str | None = None) -> MemoryPlan:
    """The worker's memory for `spec` with models of `size`. `accelerator_bytes` defaults to
    evaluation.gpuMemory; `on_accelerator` to whether the evaluation runs on one (device cuda, or auto with
    an accelerator declared); `engine` to evaluation.engine. Problems name the field to change."""
    evaluation = spec.evaluation
    entry = ENGINES[engine or evaluation.engine]
    if accelerator_bytes is None and evaluation.gpu_memory is not None:
        accelerator_bytes = quantity_bytes(evaluation.gpu_memory)
    if on_accelerator is None:
        on_accelerator = evaluation.device == "cuda" or (evaluation.device == "auto" and (
            accelerator_bytes is not None or any("gpu" in k for k in evaluation.resources.limits)))
    weights = size.weight_bytes
    inputs = (len(spec.experts) + (1 if spec.base_model is not None else 0)) * weights
    usable = None if accelerator_bytes is None else int(accelerator_bytes * (1 - ACCELERATOR_RESERVE))
    merge_on: Literal["accelerator", "host"] = "host"
    parts: list[tuple[str, str, int]]
    if not entry.served:
        if on_accelerator and (usable is None or inputs + weights <= usable):
            merge_on = "accelerator"
            parts = [("accelerator", "base and task vectors", inputs), ("accelerator", "live merge", weights)]
        elif on_accelerator:
            parts = [("host", "base and task vectors", inputs), ("accelerator", "live merge", weights)]
        else:
            parts = [("host", "base and task vectors", inputs), ("host", "live merge", weights)]
    else:
        kv = size.kv_bytes_per_token * size.context * evaluation.batch_size
        parts = [("accelerator", "server's weights", weights),
                 ("accelerator", f"KV cache ({evaluation.batch_size} sequences of {size.context} tokens)", kv)]
        if swaps_in_pod(spec):
            parts += [("host", "base and task vectors", inputs), ("host", "host copy of the merge", weights),
                      ("volume", "first and current candidate", 2 * weights)]
        else:
            parts += [("volume", "the candidate", weights)]
    plan = MemoryPlan(merge_on, tuple(parts))
    return MemoryPlan(merge_on, tuple(parts), _problems(spec, plan, entry.served, accelerator_bytes, usable))


def _problems(spec: MergeSearchSpec, plan: MemoryPlan, served: bool, accelerator_bytes: int | None,
              usable: int | None) -> tuple[str, ...]:
    problems = []
    on_accelerator = plan.total("accelerator")
    if usable is not None and on_accelerator > usable:
        assert accelerator_bytes is not None
        advice = ("a smaller model, or a larger accelerator" if served else
                  f"engine {' or '.join(SWAPPING_SERVERS)} (its server holds one copy; the experts stay in host memory), "
                  "or a larger accelerator")
        problems.append(
            f"evaluation.gpuMemory: one evaluation worker needs {on_accelerator / GiB:.1f} GiB on its accelerator "
            f"({plan.describe('accelerator')}) but {usable / GiB:.1f} GiB of its {accelerator_bytes / GiB:.0f} GiB are "
            f"usable — use {advice}")
    limit = spec.evaluation.resources.limits.get("memory")
    in_pod = plan.total("host", "volume")
    if limit is not None and in_pod > quantity_bytes(limit):
        problems.append(
            f"evaluation.resources.limits.memory: one evaluation worker holds {in_pod / GiB:.1f} GiB in host memory "
            f"({plan.describe('host', 'volume')}) but its limit is {limit} — raise it to at least "
            f"{math.ceil(in_pod * 1.1 / GiB)}Gi, or merge fewer experts")
    return tuple(problems)
