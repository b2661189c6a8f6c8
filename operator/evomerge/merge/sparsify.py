"""Sparsifiers of task vectors with mergekit 0.1.5's semantics (mergekit/sparsify.py), made fast.

magnitude (TIES): keep k = max(1, ⌊density·numel⌋) entries of largest |δ| over the whole tensor.
mergekit picks them with an unstable argsort, so which of several *equal* magnitudes at the cut survive
is an accident of the sort. `tie_order="index"` (the default of the resident merger) keeps the lowest flat
indices among them — the same on every device, and found from a histogram any density reuses;
`tie_order="mergekit"` (the exporter's default, and any mergekit config's) keeps what mergekit's CPU argsort
keeps, bit for bit, found by replaying only the sort steps that decide it (merge/torch_order.py).

random (DARE): keep each entry with probability density (p rounded to the work dtype, as bernoulli sees
it). By default (`mask_rng="counter"`) the uniforms come from a counter-based generator keyed by
(recipe seed, tensor name, expert position): any element's draw is computable anywhere, in any order,
on any device. mergekit draws `torch.bernoulli` from torch's global RNG instead; on CPU that equals
`torch.rand(numel) < p` from the same generator, so `mask_rng="mergekit"` draws from a CPU generator
seeded per tensor (tensor_seed) and reproduces mergekit's masks exactly when mergekit is seeded the
same way for that tensor — at the cost of a serial Mersenne-Twister stream.

rescale: one factor per tensor matching L1 norms, skipped below 1e-7 (not DARE's 1/p).
"""

from __future__ import annotations

import hashlib
import math

import torch

from .torch_order import kept_in_torch_order

RESCALE_EPS = 1e-7
TIE_ORDERS = ("index", "mergekit")
MASK_RNGS = ("counter", "mergekit")
_SAMPLE = 1 << 16


def keep_count(density: float, numel: int) -> int:
    return max(1, int(density * numel))


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """mergekit's DARE arithmetic dtype on CPU: bf16 stays, everything else runs in float32."""
    return dtype if dtype == torch.bfloat16 else torch.float32


def masked_rescaled(delta: torch.Tensor, mask: torch.Tensor, rescale: bool) -> torch.Tensor:
    """mergekit's rescaled_masked_tensor with the L1 norm."""
    masked = delta * mask
    if not rescale:
        return masked
    before = delta.abs().sum()
    after = masked.abs().sum()
    if before < RESCALE_EPS or after < RESCALE_EPS:
        return masked
    return masked * (before / after)


# --- magnitude ---------------------------------------------------------------------------------------


def kth_largest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest entry of a flat tensor, exactly, in a few vectorised passes.

    A sorted strided sample brackets the answer; one pass counts the entries above the bracket and
    gathers those inside it, and a selection on that small set finishes. If the bracket misses (the
    sample was unrepresentative), it falls back to a full selection — slower, never wrong.
    """
    n = values.numel()
    if n <= 4 * _SAMPLE:
        return values.kthvalue(n - k + 1).values
    stride = n // _SAMPLE
    sample = values[::stride].sort().values
    m = sample.numel()
    position = (n - k) / n * m
    margin = int(4 * math.sqrt(m)) + 2
    lo_i, hi_i = int(position) - margin, int(position) + margin
    if lo_i < 0 or hi_i >= m:
        return values.kthvalue(n - k + 1).values
    lo, hi = sample[lo_i], sample[hi_i]
    above = int((values > hi).sum())
    band = values[(values >= lo) & (values <= hi)]
    need = k - above
    if need <= 0 or need > band.numel():
        return values.kthvalue(n - k + 1).values
    return band.kthvalue(band.numel() - need + 1).values


def top_k_mask(magnitude: torch.Tensor, k: int) -> torch.Tensor:
    """Flat bool mask of the k largest entries; ties at the cut go to the lowest indices."""
    n = magnitude.numel()
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=magnitude.device)
    threshold = kth_largest(magnitude, k)
    mask = magnitude > threshold
    need = k - int(mask.sum())
    if need > 0:
        equal = (magnitude == threshold).nonzero().flatten()[:need]
        mask[equal] = True
    return mask


def magnitude_order(delta: torch.Tensor, tie_order: str) -> torch.Tensor:
    """Flat indices of |δ| from largest to smallest, ties in the requested order."""
    w = delta.abs().reshape(-1).float()
    if tie_order == "mergekit":
        return torch.argsort(w.cpu(), descending=True).to(delta.device)
    return torch.sort(w, descending=True, stable=True).indices


def magnitude_ranks(delta: torch.Tensor, tie_order: str) -> torch.Tensor:
    """Rank of every entry in magnitude order (int32, shaped like δ): `ranks < k` is the top-k mask."""
    order = magnitude_order(delta, tie_order)
    ranks = torch.empty(order.numel(), dtype=torch.int32, device=delta.device)
    ranks[order] = torch.arange(order.numel(), dtype=torch.int32, device=delta.device)
    return ranks.view(delta.shape)


def magnitude_mask(delta: torch.Tensor, density: float, tie_order: str = "index") -> torch.Tensor:
    """Bool mask (shaped like δ) of the entries TIES keeps at this density (density < 1, numel > 0)."""
    k = keep_count(density, delta.numel())
    if tie_order == "mergekit":
        w = delta.abs().reshape(-1).float().cpu()
        kept = kept_in_torch_order(w.view(torch.int32).numpy(), k)  # |x|'s float32 bits order like |x|
        if kept is not None:
            return torch.from_numpy(kept).to(delta.device).view(delta.shape)
        mask = torch.zeros(delta.numel(), dtype=torch.bool, device=delta.device)
        mask[magnitude_order(delta, tie_order)[:k]] = True
        return mask.view(delta.shape)
    if tie_order != "index":
        raise ValueError(f"tie_order {tie_order!r}: use one of {', '.join(TIE_ORDERS)}")
    return top_k_mask(delta.abs().reshape(-1).float(), k).view(delta.shape)


def sparsify_magnitude(
    delta: torch.Tensor, density: float, rescale: bool, tie_order: str = "index", ranks: torch.Tensor | None = None
) -> torch.Tensor:
    """mergekit's `magnitude`; `ranks` (from magnitude_ranks) replaces the selection when cached."""
    if density >= 1:
        return delta
    if density <= 0 or delta.numel() == 0:
        return torch.zeros_like(delta)
    if ranks is not None:
        mask = ranks < keep_count(density, delta.numel())
    else:
        mask = magnitude_mask(delta, density, tie_order)
    return masked_rescaled(delta, mask, rescale)


# --- random (DARE) -----------------------------------------------------------------------------------


def tensor_seed(seed: int, name: str) -> int:
    """The seed of one tensor's masks: a function of (recipe seed, tensor name), not of merge order."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def mask_threshold(density: float, dtype: torch.dtype) -> float:
    """Bernoulli's p as the kernel sees it: rounded to the work dtype."""
    return float(torch.tensor(density, dtype=work_dtype(dtype)).float())


def draw_uniforms(numel: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(numel, generator=generator, dtype=torch.float32)


def sparsify_random(
    delta: torch.Tensor, density: float, rescale: bool, uniforms: torch.Tensor | None, exact_norms: bool = False
) -> torch.Tensor:
    """mergekit's `bernoulli` given this tensor's uniforms (None only when density ≥ 1 draws nothing).

    `exact_norms` (the counter-RNG mode) takes the rescale factor from exact L1 sums, which any
    summation order reproduces; mergekit sums in the work dtype, in torch's order.
    """
    if density >= 1:
        return delta
    assert uniforms is not None
    mask = (uniforms < mask_threshold(density, delta.dtype)).view(delta.shape)
    work = work_dtype(delta.dtype)
    if not (rescale and exact_norms):
        return masked_rescaled(delta.to(work), mask, rescale).to(delta.dtype)
    from .kernels import exact_l1, exact_ratio

    masked = delta.to(work) * mask
    factor = exact_ratio(exact_l1(delta.to(work)), exact_l1(masked), work)
    if factor is None:
        return masked.to(delta.dtype)
    return (masked * torch.tensor(factor, dtype=work, device=masked.device)).to(delta.dtype)


# --- magnitude outliers (Model Breadcrumbs) ----------------------------------------------------------


def sparsify_outliers(delta: torch.Tensor, density: float, rescale: bool, gamma: float) -> torch.Tensor:
    """mergekit's `magnitude_outliers`: drop the γ·numel largest |δ| (outliers) and the smallest, keeping
    ⌊density·numel⌋ entries. The order is mergekit's own sort of |δ| (float32 on the CPU), so equal
    magnitudes at either cut fall the same way and the result is mergekit's bit for bit."""
    if density >= 1:
        return delta
    numel = delta.numel()
    keep = int(density * numel)
    bottom = max(0, numel - keep - int(gamma * numel))
    magnitude = delta.abs().reshape(-1)
    if magnitude.device.type == "cpu":
        magnitude = magnitude.float()
    order = torch.sort(magnitude, descending=False).indices
    mask = torch.zeros(numel, dtype=torch.bool, device=delta.device)
    mask[order[bottom:bottom + keep]] = True
    return masked_rescaled(delta, mask.view(delta.shape), rescale)
