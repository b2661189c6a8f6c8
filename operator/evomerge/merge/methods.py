"""The tensor math of each merge method, attached to the method's catalogue entry (catalogue/methods.py).

What a method evolves, needs and defaults to is the catalogue's; this module only says which function
merges its tensors (and, for sparsifiers the shared task-arithmetic path does not special-case, which
function sparsifies a task vector).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..catalogue import methods as catalogue
from . import kernels
from .linear import linear as linear_math
from .slerp import slerp as slerp_math
from .sparsify import sparsify_outliers
from .task_arithmetic import merge_family
from .workspace import Workspace

# (base tensor or None, expert tensors, per-expert parameters, resolved options, tensor name) -> merged tensor
MethodFn = Callable[[torch.Tensor | None, list[torch.Tensor], list[dict[str, float]], dict, str], torch.Tensor]
# (task vector, density, resolved options) -> sparsified task vector
SparsifyFn = Callable[[torch.Tensor, float, dict], torch.Tensor]


@dataclass(frozen=True)
class MergeMethod:
    """A catalogue entry with its math: every fact (name, genes, needs_base, sparsifier, …) reads through."""

    entry: catalogue.Method
    fn: MethodFn
    sparsify: SparsifyFn | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "entry":  # not yet set (while unpickling): no entry to read through
            raise AttributeError(name)
        return getattr(self.entry, name)


METHODS: dict[str, MergeMethod] = {}


def get_method(name: str) -> MergeMethod:
    catalogue.get_method(name)  # the catalogue's message for an unknown name
    return METHODS[name]


def compute_dtype(options: dict, tensors: list[torch.Tensor]) -> torch.dtype:
    """The merge dtype: the recipe's `dtype`, else the promotion of the inputs (mergekit's rule)."""
    if options.get("compute_dtype") is not None:
        return options["compute_dtype"]
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def _linear(base, experts, params, options, name):
    dtype = compute_dtype(options, experts)
    tensors = [e.to(dtype) for e in experts]
    out = _output_buffer(tensors[0], experts[0], options)
    return linear_into(tensors, [p["weight"] for p in params], options["normalize"], out)


def linear_into(tensors: list[torch.Tensor], weights: list[float], normalize: bool, out: torch.Tensor) -> torch.Tensor:
    """linear of same-dtype tensors written into `out` (contiguous, their dtype; it may be tensors[0])."""
    if not kernels.available(tensors[0].dtype, 1, tensors[0].device):
        out.copy_(linear_math(tensors, weights, normalize))
        return out
    coefficients = torch.tensor([weights], dtype=torch.float32)
    denominator = float(coefficients.sum(dim=1))
    kernels.linear(tuple(kernels.as_array(t.contiguous()) for t in tensors), coefficients[0].numpy(), normalize,
                   denominator, kernels.as_array(out))
    return out


def _output_buffer(converted: torch.Tensor, original: torch.Tensor, options: dict) -> torch.Tensor:
    """Where a fused kernel may write: the input itself when converting made it a private copy, else memory
    the caller lends (the exporter's `workspace`), else a fresh tensor."""
    if converted.is_contiguous() and converted is not original:
        return converted
    workspace: Workspace | None = options.get("workspace")
    if workspace is not None:
        return workspace.scratch(converted.numel(), converted.dtype).view(converted.shape)
    return torch.empty_like(converted, memory_format=torch.contiguous_format)


def _slerp(base, experts, params, options, name):
    if base is None or len(experts) != 1:
        raise ValueError(f"tensor {name}: slerp interpolates between the base and exactly one expert")
    dtype = compute_dtype(options, [base, experts[0]])
    return slerp_math(params[0]["t"], base.to(dtype), experts[0].to(dtype))


def _task_arithmetic_family(method_name: str) -> MethodFn:
    def merge(base, experts, params, options, name):
        if base is None:
            raise ValueError(f"tensor {name}: {method_name} merges task vectors and needs the base tensor")
        dtype = compute_dtype(options, [base, *experts])
        b = base.to(dtype)
        out = _output_buffer(b, base, options)
        return merge_family(METHODS[method_name], b, [e.to(dtype) for e in experts], False, params, options, name, out)

    return merge


def _attach(name: str, fn: MethodFn, sparsify: SparsifyFn | None = None) -> None:
    METHODS[name] = MergeMethod(catalogue.METHODS[name], fn, sparsify)


_attach("linear", _linear)
_attach("slerp", _slerp)
for _name in ("task_arithmetic", "ties", "dare_ties", "dare_linear"):
    _attach(_name, _task_arithmetic_family(_name))
_attach("breadcrumbs", _task_arithmetic_family("breadcrumbs"),
        lambda delta, density, options: sparsify_outliers(delta, density, options["rescale"], options["gamma"]))
