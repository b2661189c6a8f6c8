"""The task-arithmetic family (task_arithmetic, ties, dare_ties, dare_linear): combining task vectors.

The operations follow mergekit 0.1.5's GeneralizedTaskArithmeticMerge.merge_group one for one, in the
same dtype and order, so results agree bit for bit: weights are rounded to the merge dtype, products
and sums are formed in it, and the consensus divisor counts only agreeing weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import kernels
from .sparsify import (
    RESCALE_EPS, draw_uniforms, keep_count, mask_threshold, sparsify_magnitude, sparsify_random, tensor_seed,
)
from .workspace import Workspace

if TYPE_CHECKING:
    from .methods import MergeMethod

NORMALIZE_EPS = 1e-8
# Elements per slice of the element-wise combine; bounds temporaries for huge tensors (embeddings).
COMBINE_CHUNK = 1 << 22


def combine(
    base: torch.Tensor,
    deltas: torch.Tensor,
    weights: list[float],
    *,
    consensus: bool,
    normalize: bool,
    scale: float,
    in_place: bool = False,
    chunk: int = COMBINE_CHUNK,
) -> torch.Tensor:
    """b + λ·Σᵢ mᵢ·wᵢ·δᵢ (÷ the divisor when normalising), for stacked (sparsified) deltas [n, *shape].

    Every step is element-wise across the expert axis, so large tensors are combined in slices of
    `chunk` elements with the same result. `in_place` lets the caller's deltas buffer be overwritten.
    """
    n = deltas.shape[0]
    if n == 0:
        return base
    flat = deltas.reshape(n, -1)
    w = torch.tensor(weights, dtype=deltas.dtype, device=deltas.device).view(n, 1)
    out = torch.empty(base.numel(), dtype=base.dtype, device=base.device)
    base_flat = base.reshape(-1)
    for start in range(0, max(flat.shape[1], 1), chunk):
        part = flat[:, start:start + chunk]
        part = part.mul_(w) if in_place else part * w
        out[start:start + chunk] = _combine_part(base_flat[start:start + chunk], part, w, consensus, normalize, scale)
    return out.view(base.shape)


def _combine_part(
    base: torch.Tensor, weighted: torch.Tensor, w: torch.Tensor, consensus: bool, normalize: bool, scale: float
) -> torch.Tensor:
    if consensus:
        sign = weighted.sign()
        majority = (weighted.sum(dim=0) >= 0).to(weighted.dtype) * 2 - 1
        mask = sign == majority
        del sign
        mixed = (weighted * mask).sum(dim=0)
        divisor = (w * mask).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed = weighted.sum(dim=0)
        divisor = w.sum(dim=0)
        divisor[divisor.abs() < NORMALIZE_EPS] = 1
    if normalize:
        mixed /= divisor
    if scale != 1:
        mixed *= scale
    return (base + mixed).to(base.dtype)


@dataclass
class FusedCache:
    """What the resident merger keeps per tensor for the fused kernels, built from the task vectors once:
    each δᵢ's magnitude-key histogram (TIES, bf16) or its exact L1 mass per uniform bucket (DARE)."""

    histograms: list[np.ndarray] | None = None
    l1: list[kernels.UniformL1] | None = None


FUSED_SPARSIFIERS = (None, "magnitude", "random")


def uses_fused(method: MergeMethod, dtype: torch.dtype, experts: int, device: torch.device, options: dict) -> bool:
    """The fused kernels cover no, magnitude (either tie order) and random sparsification with the counter RNG;
    mergekit's RNG stream, and every other sparsifier, run on the torch path."""
    return kernels.available(dtype, experts, device) and method.sparsifier in FUSED_SPARSIFIERS and not (
        method.sparsifier == "random" and options["mask_rng"] != "counter"
    )


def merge_family(
    method: MergeMethod,
    base: torch.Tensor,
    inputs: list[torch.Tensor],
    from_delta: bool,
    params: list[dict[str, float]],
    options: dict,
    name: str,
    out: torch.Tensor | None = None,
    ranks: list[torch.Tensor] | None = None,
    uniforms: torch.Tensor | None = None,
    fused_cache: FusedCache | None = None,
) -> torch.Tensor:
    """One tensor of task_arithmetic / ties / dare_*: b + combine(sparsify(δᵢ)), fused when the kernels apply.

    `inputs` are the experts (or, with from_delta, their task vectors), all in the merge dtype. `out`
    receives the result (it may be `base`). `ranks` / `uniforms` are the resident merger's caches for
    the torch path, `fused_cache` for the fused one (from_delta only). The exporter and the resident
    merger both come here, so they cannot disagree.
    """
    if uses_fused(method, base.dtype, len(inputs), base.device, options):
        cache = fused_cache if from_delta else None
        return _fused(method, base, inputs, from_delta, params, options, name, out, cache)
    deltas = base.new_empty((len(inputs), *base.shape))
    generator: torch.Generator | None = None
    draws = 0
    for i, (tensor, p) in enumerate(zip(inputs, params)):
        delta = tensor if from_delta else tensor - base
        density = p.get("density", 1.0)
        if method.sparsifier == "magnitude":
            delta = sparsify_magnitude(delta, density, options["rescale"], options["tie_order"], ranks[i] if ranks else None)
        elif method.sparsifier == "random":
            u = None
            if density < 1:
                if uniforms is not None:
                    u = uniforms[draws if options["mask_rng"] == "mergekit" else i]
                elif options["mask_rng"] == "mergekit":
                    if generator is None:
                        generator = torch.Generator().manual_seed(tensor_seed(options["seed"], name))
                    u = draw_uniforms(delta.numel(), generator).to(delta.device)
                else:
                    u = kernels.counter_uniforms(kernels.expert_key(tensor_seed(options["seed"], name), i), delta.numel(),
                                                 delta.device)
                draws += 1
            delta = sparsify_random(delta, density, options["rescale"], u, exact_norms=options["mask_rng"] == "counter")
        elif method.sparsify is not None:
            delta = method.sparsify(delta, density, options)
        deltas[i] = delta
        del delta
    result = combine(base, deltas, [p["weight"] for p in params], consensus=method.consensus,
                     normalize=options["normalize"], scale=options["lambda"], in_place=True)
    if out is None:
        return result
    out.copy_(result)
    return out


def _fused(method, base, inputs, from_delta, params, options, name, out, cache: FusedCache | None) -> torch.Tensor:
    dtype = base.dtype
    base_c = base.contiguous()
    arrays = tuple(kernels.as_array(t.contiguous()) for t in inputs)
    base_a = kernels.as_array(base_c)
    tensor_key = tensor_seed(options["seed"], name)
    kinds, cuts, rkeys, ps, factors = [], [], [], [], []
    magnitude_ks = [
        keep_count(p.get("density", 1.0), base_a.size)
        if method.sparsifier == "magnitude" and 0 < p.get("density", 1.0) < 1 and base_a.size else None
        for p in params
    ]
    chosen: list[np.ndarray | None] = [None] * len(arrays)
    if options["tie_order"] == "mergekit" and any(k is not None for k in magnitude_ks):
        chosen = kernels.torch_order_masks(arrays, base_a, from_delta, magnitude_ks)
        all_cuts = [None] * len(arrays)
    elif cache is not None and cache.histograms is not None:
        all_cuts = (kernels.cuts_from_histograms(cache.histograms, arrays, magnitude_ks)
                    if any(k is not None for k in magnitude_ks) else [None] * len(arrays))
    elif any(k is not None for k in magnitude_ks):
        all_cuts = kernels.magnitude_cuts(arrays, base_a, from_delta, magnitude_ks, dtype == torch.bfloat16)
    else:
        all_cuts = [None] * len(arrays)
    for i, (array, p) in enumerate(zip(arrays, params)):
        density = p.get("density", 1.0)
        kind, cut, rkey, prob = kernels.KEEP, all_cuts[i], 0, 0.0
        if method.sparsifier is not None and density < 1:
            if density <= 0 or array.size == 0:
                kind = kernels.ZERO
            elif method.sparsifier == "magnitude":
                kind = kernels.CHOSEN if chosen[i] is not None else kernels.MAGNITUDE
            else:
                kind, rkey, prob = kernels.RANDOM, kernels.expert_key(tensor_key, i), mask_threshold(density, dtype)
        factor = None
        if options["rescale"] and kind in (kernels.MAGNITUDE, kernels.CHOSEN):
            before, after = kernels.masked_abs_sums(array, base_a, from_delta, kind, cut, rkey, prob, dtype, chosen[i])
            if not (before < RESCALE_EPS or after < RESCALE_EPS):
                factor = float(before / after)
        kinds.append(kind)
        cuts.append(cut)
        rkeys.append(rkey)
        ps.append(prob)
        factors.append(factor)
    result = out if out is not None else torch.empty_like(base_c)
    if not result.is_contiguous() or result.dtype != dtype:
        raise ValueError(f"tensor {name}: the fused merge writes into a contiguous {dtype} tensor")
    if options["rescale"] and kernels.RANDOM in kinds:
        active = [k == kernels.RANDOM for k in kinds]
        for i, l1 in enumerate(cache.l1 if cache is not None and cache.l1 is not None else []):
            if active[i] and l1.on_grid(ps[i]):
                factors[i], active[i] = l1.rescale_factor(ps[i], dtype), False
        if any(active):
            workspace: Workspace | None = options.get("workspace")
            if workspace is not None and not from_delta:
                exact, arrays = _store_masked(workspace, base_c, base_a, inputs, arrays, active, rkeys, ps, result)
                from_delta = True
                kinds = [kernels.KEEP if k == kernels.RANDOM else k for k in kinds]
            else:
                exact = kernels.random_rescale_factors(base_a, arrays, from_delta, active, rkeys, ps, dtype)
            factors = [e if on else f for e, f, on in zip(exact, factors, active)]
    weights = torch.tensor([p["weight"] for p in params], dtype=dtype)
    divisor = weights.view(len(params), 1).sum(dim=0)
    divisor[divisor.abs() < NORMALIZE_EPS] = 1
    kernels.combine(
        base_a, arrays, from_delta, kinds, cuts, rkeys, ps, factors, weights.float().tolist(), method.consensus,
        options["normalize"], float(divisor), options["lambda"], kernels.as_array(result), chosen=chosen,
    )
    return result.view(base.shape)


def _store_masked(workspace: Workspace, base: torch.Tensor, base_a: np.ndarray, inputs: list[torch.Tensor],
                  arrays: tuple[np.ndarray, ...], active: list[bool], rkeys: list[int], ps: list[float], result: torch.Tensor
                  ) -> tuple[list[float | None], tuple[np.ndarray, ...]]:
    """The exporter's DARE rescale pass: each expert's masked task vector is stored in memory the exporter lends
    (the first in the result, unless that is the base), so the combine neither subtracts the base nor draws the
    masks again. One expert at a time, released after its pass: memory holds one input besides the stored ones."""
    exact: list[float | None] = []
    stored = []
    for i, array in enumerate(arrays):
        own = i == 0 and result.data_ptr() != base.data_ptr()
        target = kernels.as_array(result if own else workspace.scratch(array.size, base.dtype))
        exact += kernels.random_rescale_factors(base_a, (array,), False, [active[i]], [rkeys[i]], [ps[i]], base.dtype,
                                                (target,))
        workspace.release(inputs[i])
        stored.append(target)
    return exact, tuple(stored)
