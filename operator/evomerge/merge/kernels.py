"""Fused CPU kernels for the task-arithmetic family and linear: one pass per tensor, bit-exact with torch.

mergekit spends most of a TIES/DARE merge in ~25 separate tensor passes (and a full argsort); these
kernels read every input once and write the output once, reproducing each torch step's rounding:
a bf16 op is the float32 op rounded to nearest-even, `sum(dim=0)` accumulates sequentially in float32
(verified for up to 12 bf16 / 4 float32 experts — beyond that the torch path runs), `addcmul_` is an
FMA. Tests compare every kernel against the torch implementation it replaces.

Magnitude selection counts instead of sorting (|x| orders like its bits): for large bf16 tensors a
strided sample brackets each threshold within a few keys and one pass counts the keys above and inside
the brackets; otherwise an exact histogram of the keys (two levels for float32). Ties at the cut go to
the lowest indices. DARE's default masks come from a counter-based generator (splitmix64 of key +
index), so any element's draw is computed where it is needed, on any thread, identically in the numpy
fallback; its L1 rescaling uses exact sums (int64 fixed-point limbs per chunk, below its largest value),
which no order can change.

Loops index with unsigned integers (see _load): numba then skips the negative-index wraparound check,
which otherwise keeps LLVM from vectorising them (about 3x on these loops). Kernels release the GIL, so
the exporter's writer thread runs while they compute; below PARALLEL_MIN_ELEMENTS a serial twin runs.
"""

from __future__ import annotations

import math
from fractions import Fraction
from types import FunctionType

import numpy as np
import torch

try:
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.extending import intrinsic, overload
except ImportError:  # the torch path computes the same results, only slower
    njit = None

CHUNK = 1 << 12  # elements per work item: the combine's float32 rows (one per expert) stay in cache (2^14 was ~10% slower)
PARALLEL_MIN_ELEMENTS = 1 << 16
L1_CHUNK = 1 << 13  # _l1_exact's fixed-point range assumes at most 2^13 values per chunk
FIXED_SPAN = {16: 63 - 14 - 8, 32: 63 - 14 - 24}  # binades per int64 limb: 2^13 mantissas of 8 / 24 bits, a guard bit
LIMBS = 12  # limbs of FIXED_SPAN binades that cover every exponent (254 binades) for both dtypes
MAX_EXPERTS = {torch.bfloat16: 12, torch.float32: 4}
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1
KEEP, MAGNITUDE, RANDOM, ZERO, CHOSEN = 0, 1, 2, 3, 4  # CHOSEN: an explicit mask (torch's tie order)
# mergekit's rescale threshold, the float 1e-7, in units of each dtype's smallest subnormal and rounded up:
# an exact integer sum is below it exactly when its value is below 1e-7.
_EPS_UNITS = {dtype: math.ceil(Fraction(1e-7) * 2**unit) for dtype, unit in ((torch.bfloat16, 134), (torch.float32, 150))}


def exact_l1(tensor: torch.Tensor) -> int:
    """Σ|x| of a bf16 / float32 tensor as an exact integer in units of its smallest subnormal (torch fallback)."""
    key = magnitude_key(tensor).to(torch.int64).reshape(-1)
    shift, low = (7, 0x7F) if tensor.dtype == torch.bfloat16 else (23, 0x7FFFFF)
    exponent = key >> shift
    mantissa = torch.where(exponent > 0, (key & low) | (low + 1), key & low)
    exponent = exponent.clamp(min=1)
    buckets = torch.zeros(256, dtype=torch.int64).scatter_add_(0, exponent.cpu(), mantissa.cpu())
    return scaled_sum(buckets.numpy())


def available(dtype: torch.dtype, experts: int, device: torch.device | str = "cpu") -> bool:
    """Whether the fused kernels reproduce torch exactly for this dtype and expert count on this device."""
    return njit is not None and torch.device(device).type == "cpu" and experts <= MAX_EXPERTS.get(dtype, 0)


def as_array(tensor: torch.Tensor) -> np.ndarray:
    """A flat numpy view (bf16 as its uint16 bits); the tensor must be contiguous."""
    flat = tensor.reshape(-1)
    if tensor.dtype == torch.bfloat16:
        return flat.view(torch.int16).numpy().view(np.uint16)
    return flat.numpy()


# --- the counter-based DARE generator (shared with the numpy fallback) ---------------------------------


def splitmix64(value: int) -> int:
    z = value & _MASK64
    z = ((z ^ (z >> 30)) * MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * MIX2) & _MASK64
    return z ^ (z >> 31)


def expert_key(tensor_key: int, expert: int) -> int:
    """The stream of expert `expert` (position in the recipe) for one tensor."""
    return splitmix64(tensor_key ^ splitmix64(expert + 1))


def counter_uniforms(key: int, numel: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """u_j = top 24 bits of splitmix64(key + j·φ) / 2²⁴, as float32 (exact), for j < numel, made on `device`
    (a GPU draws its own instead of receiving them from the host: 4 bytes per element and expert)."""
    if torch.device(device).type != "cpu":
        return _device_uniforms(key, numel, torch.device(device))
    z = np.uint64(key) + np.arange(numel, dtype=np.uint64) * np.uint64(GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    z = z ^ (z >> np.uint64(31))
    return torch.from_numpy((z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24))


def _device_uniforms(key: int, numel: int, device: torch.device, chunk: int = 1 << 26) -> torch.Tensor:
    """counter_uniforms in torch's int64 arithmetic, which wraps like uint64 for +, * and ^; right shifts are
    arithmetic, so the sign-extended bits are masked off. Chunked: each element needs a few int64 temporaries."""

    def signed(value: int) -> int:
        return value - (1 << 64) if value >= 1 << 63 else value

    def shr(z: torch.Tensor, bits: int) -> torch.Tensor:
        return (z >> bits) & ((1 << (64 - bits)) - 1)

    out = torch.empty(numel, dtype=torch.float32, device=device)
    for start in range(0, numel, chunk):
        z = torch.arange(start, min(numel, start + chunk), dtype=torch.int64, device=device) * signed(GOLDEN) + signed(key)
        z = (z ^ shr(z, 30)) * signed(MIX1)
        z = (z ^ shr(z, 27)) * signed(MIX2)
        z = z ^ shr(z, 31)
        out[start:start + chunk] = shr(z, 40).to(torch.float32) * 2.0**-24
    return out


# --- magnitude selection --------------------------------------------------------------------------------


def magnitude_key(tensor: torch.Tensor) -> torch.Tensor:
    """|x| as an integer that orders like |x|: the bf16 bits without sign (15 bits) or float32's (31)."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).to(torch.int32) & 0x7FFF
    return tensor.float().view(torch.int32) & 0x7FFFFFFF


def select_from_histogram(hist: np.ndarray, k: int) -> tuple[int, int, int]:
    """(bin of the k-th largest, how many above it, how many in it) from a histogram over keys."""
    from_top = np.cumsum(hist[::-1])
    position = int(np.searchsorted(from_top, k))  # first prefix (from the top) reaching k
    bin_ = len(hist) - 1 - position
    above = int(from_top[position - 1]) if position > 0 else 0
    return bin_, above, int(hist[bin_])


if njit is not None:

    @intrinsic
    def _f32(typingctx, bits):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return types.float32(types.uint32), codegen

    @intrinsic
    def _u32(typingctx, value):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))

        return types.uint32(types.float32), codegen

    @intrinsic
    def _fma(typingctx, a, b, c):
        def codegen(context, builder, signature, args):
            f32 = ir.FloatType()
            fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
            return builder.call(fn, args)

        return types.float32(types.float32, types.float32, types.float32), codegen

    def _load(a, j):
        raise NotImplementedError

    @overload(_load, inline="always")
    def _load_impl(a, j):
        if a.dtype == types.uint16:
            return lambda a, j: _f32(np.uint32(np.uint32(a[np.uint64(j)]) << np.uint32(16)))
        return lambda a, j: np.float32(a[np.uint64(j)])

    def _round(x, a):
        raise NotImplementedError

    @overload(_round, inline="always")
    def _round_impl(x, a):
        if a.dtype == types.uint16:

            def impl(x, a):
                bits = _u32(x)
                rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
                nan = np.uint32(x != x)  # branch-free: a quiet NaN stays a quiet NaN
                return _f32(np.uint32(rounded * (np.uint32(1) - nan) + np.uint32(0x7FC00000) * nan))

            return impl
        return lambda x, a: x

    def _store(a, j, x):
        raise NotImplementedError

    @overload(_store, inline="always")
    def _store_impl(a, j, x):
        if a.dtype == types.uint16:

            def impl(a, j, x):
                a[np.uint64(j)] = np.uint16(_u32(x) >> np.uint32(16))

            return impl

        def impl_f32(a, j, x):
            a[np.uint64(j)] = x

        return impl_f32

    def _key(x, a):
        raise NotImplementedError

    @overload(_key, inline="always")
    def _key_impl(x, a):
        if a.dtype == types.uint16:
            return lambda x, a: np.int64((_u32(x) >> np.uint32(16)) & np.uint32(0x7FFF))
        return lambda x, a: np.int64(_u32(x) & np.uint32(0x7FFFFFFF))

    @njit(inline="always")
    def _draw(key, j):
        """The 24-bit integer behind u_j (counter_uniforms)."""
        z = key + np.uint64(j) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
        z = z ^ (z >> np.uint64(31))
        return z >> np.uint64(40)

    @njit(inline="always")
    def _uniform(key, j):
        return np.float32(_draw(key, j)) * np.float32(5.9604644775390625e-08)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _uniform_l1_buckets(delta, rkey, floor):
        """Σ|δ| per top-16-bit bucket of u (int64 fixed point in units of 2^floor), and the entries below the
        floor as (bucket, exponent, mantissa) for the exact slow path. Serial: a scatter, run once per tensor."""
        shift, low, _ = _layout(delta)
        n = delta.size
        sums = np.zeros(1 << 16, np.int64)
        below = 0
        for j in range(n):
            k = _key(_load(delta, j), delta)
            e = k >> shift
            if e >= floor:
                sums[_draw(rkey, j) >> np.uint64(8)] += ((k & low) | (low + 1)) << (e - floor)
            elif k != 0:
                below += 1
        slow = np.zeros((below, 3), np.int64)
        row = 0
        for j in range(n if below else 0):
            k = _key(_load(delta, j), delta)
            if k != 0 and (k >> shift) < floor:
                e, mant = _exponent_mantissa(k, delta)
                slow[row, 0] = np.int64(_draw(rkey, j) >> np.uint64(8))
                slow[row, 1] = e
                slow[row, 2] = mant
                row += 1
        return sums, slow

    @njit(inline="always")
    def _delta(expert, base, from_delta, j):
        if from_delta:
            return _load(expert, j)
        return _round(_load(expert, j) - _load(base, j), base)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _histogram(expert, base, from_delta, shift, only_high, bins, parts):
        n = expert.size
        hist = np.zeros((parts, bins), np.int64)
        per = (n + parts - 1) // parts
        for c in prange(parts):
            for j in range(c * per, min(n, (c + 1) * per)):
                key = _key(_delta(expert, base, from_delta, j), base)
                if only_high < 0:
                    hist[c, key >> shift] += 1
                elif (key >> 15) == only_high:
                    hist[c, key & 0x7FFF] += 1
        return hist.sum(axis=0)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _sample_keys(expert, base, from_delta, stride):
        count = (expert.size + stride - 1) // stride
        keys = np.empty(count, np.int64)
        for s in range(count):
            keys[s] = _key(_delta(expert, base, from_delta, s * stride), base)
        return keys

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _bracket_counts(base, experts, from_delta, lo, hi, width, chunk):
        n = base.size
        m = len(experts)
        chunks = (n + chunk - 1) // chunk
        above = np.zeros((m, chunks), np.int64)
        band = np.zeros((m, chunks, width), np.int64)
        for c in prange(chunks):
            start = c * chunk
            length = min(n, start + chunk) - start
            b = np.empty(length, np.float32)
            for jj in range(length):
                b[jj] = _load(base, start + jj)
            keys = np.empty(length, np.int64)
            for i in range(m):
                expert = experts[i]
                low, high = lo[i], hi[i]
                if high < low:
                    continue
                for jj in range(length):
                    if from_delta:
                        keys[jj] = _key(_load(expert, start + jj), base)
                    else:
                        keys[jj] = _key(_round(_load(expert, start + jj) - b[jj], base), base)
                count = 0
                for jj in range(length):
                    count += np.int64(keys[jj] > high)
                counts = band[i, c]
                span = high - low
                for jj in range(length):
                    offset = keys[jj] - low
                    if 0 <= offset <= span:
                        counts[offset] += 1
                above[i, c] = count
        return above, band

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _equal_counts(experts, base, from_delta, thresholds, chunk):
        """Per expert and chunk, how many keys equal the expert's threshold (none counted where it is < 0)."""
        n = base.size
        m = len(experts)
        chunks = (n + chunk - 1) // chunk
        counts = np.zeros((m, chunks), np.int64)
        for c in prange(chunks):
            start = c * chunk
            length = min(n, start + chunk) - start
            for i in range(m):
                expert = experts[i]
                threshold = thresholds[i]
                if threshold < 0:
                    continue
                total = np.int64(0)
                for jj in range(length):
                    total += np.int64(_key(_delta(expert, base, from_delta, start + jj), base) == threshold)
                counts[i, c] = total
        return counts

    @njit(inline="always")
    def _keep(kind, d, key, threshold, need, seen, rkey, p, j, chosen):
        if kind == 0:
            return True, seen
        if kind == 4:
            return chosen[j] != 0, seen
        if kind == 1:
            if key > threshold:
                return True, seen
            if key == threshold:
                return seen < need, seen + 1
            return False, seen
        if kind == 2:
            return _uniform(rkey, j) < p, seen
        return False, seen

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _masked_abs(expert, base, from_delta, kind, threshold, need, prefix, rkey, p, chosen, out_abs, out_masked, chunk):
        n = expert.size
        chunks = (n + chunk - 1) // chunk
        for c in prange(chunks):
            seen = prefix[c]
            for j in range(c * chunk, min(n, (c + 1) * chunk)):
                d = _delta(expert, base, from_delta, j)
                keep, seen = _keep(kind, d, _key(d, base), threshold, need, seen, rkey, p, j, chosen)
                a = abs(d)
                _store(out_abs, j, a)
                _store(out_masked, j, a * np.float32(keep))

    def _exponent_mantissa(key, a):
        raise NotImplementedError

    @overload(_exponent_mantissa, inline="always")
    def _exponent_mantissa_impl(key, a):
        """|x| = mantissa · 2^(exponent − bias) exactly, from its magnitude key (subnormals: exponent 1)."""
        shift, low = (7, 0x7F) if a.dtype == types.uint16 else (23, 0x7FFFFF)

        def impl(key, a):
            e = key >> shift
            m = key & low
            if e > 0:
                return e, m | (low + 1)
            return np.int64(1), m

        return impl

    def _layout(a):
        raise NotImplementedError

    @overload(_layout, inline="always")
    def _layout_impl(a):
        """(exponent shift, mantissa mask, span) of a key; span: binades below a chunk's largest |x| that an
        int64 fixed-point sum of L1_CHUNK = 2^13 mantissas (8 or 24 bits) holds exactly, with a guard bit."""
        span = FIXED_SPAN[16 if a.dtype == types.uint16 else 32]
        if a.dtype == types.uint16:
            return lambda a: (np.int64(7), np.int64(0x7F), np.int64(span))
        return lambda a: (np.int64(23), np.int64(0x7FFFFF), np.int64(span))

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _l1_exact(base, experts, from_delta, active, rkey, p, store, stored, chunk):
        """Per chunk and expert: Σ|δ| and Σ|mask·δ| exactly, as int64 fixed-point limbs of `span` binades each
        above a floor (limb 0 in the vectorised loop; deeper limbs, rarely needed, after it). The floor is
        guessed from the base's largest value, so one pass both forms δ and sums it; an expert whose δ reaches
        more than a binade above the base's largest (which could overflow limb 0) is summed again from the
        floor below its own largest. With `store`, stored[i] receives expert i's task vector, masked where
        active, so the combine can read it as a task vector with nothing left to subtract or draw."""
        n = base.size
        m = len(experts)
        chunks = (n + chunk - 1) // chunk
        sums = np.zeros((chunks, m, LIMBS, 2), np.int64)
        floors = np.ones((chunks, m), np.int64)
        shift, _, span = _layout(base)
        unit = np.int64(134 if shift == 7 else 150)  # the exponent bias plus the mantissa bits
        for c in prange(chunks):
            start = c * chunk
            length = min(n, start + chunk) - start
            b = np.empty(length, np.float32)
            base_top = np.int64(0)
            for jj in range(length):
                x = _load(base, start + jj)
                b[jj] = x
                base_top = max(base_top, _key(x, base))
            guess = max(np.int64(1), (base_top >> shift) + 1 - span)
            deltas = np.empty(length, np.float32)
            masks = np.empty(length, np.bool_)
            for i in range(m):
                if not (active[i] or store):
                    continue
                expert = experts[i]
                if not active[i]:
                    target = stored[i]
                    for jj in range(length):
                        if from_delta:
                            _store(target, start + jj, _load(expert, start + jj))
                        else:
                            _store(target, start + jj, _round(_load(expert, start + jj) - b[jj], base))
                    continue
                key = rkey[i]
                # u < p exactly when the 24-bit draw is below p·2^24 rounded up; |δ| in units of the floor's
                # smallest step is an exact integer (a power-of-two scaling of a value that fits in 53 bits)
                cut = np.uint64(math.ceil(np.float64(p[i]) * 16777216.0))
                floor = guess
                floor_key = floor << shift
                scale = math.ldexp(1.0, unit - floor)
                top = np.int64(0)
                whole = np.int64(0)
                kept = np.int64(0)
                below = np.int64(0)
                for jj in range(length):
                    if from_delta:
                        d = _load(expert, start + jj)
                    else:
                        d = _round(_load(expert, start + jj) - b[jj], base)
                    deltas[jj] = d
                    k = _key(d, base)
                    top = max(top, k)
                    keep = _draw(key, start + jj) < cut
                    masks[jj] = keep
                    part = np.int64(abs(np.float64(d)) * scale) if k >= floor_key else np.int64(0)
                    whole += part
                    kept += part if keep else np.int64(0)
                    below += np.int64((k < floor_key) & (k != 0))
                if (top >> shift) - floor > span:
                    floor = (top >> shift) - span
                    floor_key = floor << shift
                    scale = math.ldexp(1.0, unit - floor)
                    whole, kept, below = np.int64(0), np.int64(0), np.int64(0)
                    for jj in range(length):
                        d = deltas[jj]
                        k = _key(d, base)
                        part = np.int64(abs(np.float64(d)) * scale) if k >= floor_key else np.int64(0)
                        whole += part
                        kept += part if masks[jj] else np.int64(0)
                        below += np.int64((k < floor_key) & (k != 0))
                if store:
                    target = stored[i]
                    for jj in range(length):
                        _store(target, start + jj, deltas[jj] * np.float32(masks[jj]))  # as torch's mask · δ: −0 stays −0
                limbs = sums[c, i]
                limbs[0, 0] = whole
                limbs[0, 1] = kept
                floors[c, i] = floor
                if below:  # values below the floor: deeper limbs
                    for jj in range(length):
                        k = _key(deltas[jj], base)
                        if k != 0 and (k >> shift) < floor:
                            e, mant = _exponent_mantissa(k, base)
                            limb = (floor - e + span - 1) // span
                            part = mant << (e - floor + limb * span)
                            limbs[limb, 0] += part
                            if masks[jj]:
                                limbs[limb, 1] += part
        return sums, floors

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _combine(base, experts, from_delta, kind, threshold, need, prefix, chosen, rkey, p, has_factor, factor, w,
                 consensus, normalize, divisor, lam, apply_lam, out, chunk):
        n = base.size
        m = len(experts)
        chunks = (n + chunk - 1) // chunk
        zero = np.float32(0.0)
        for c in prange(chunks):
            start = c * chunk
            length = min(n, start + chunk) - start
            b = np.empty(length, np.float32)
            for jj in range(length):
                b[jj] = _load(base, start + jj)
            weighted = np.empty((m, length), np.float32)
            for i in range(m):
                expert = experts[i]
                k, cut, limit, seen, key, prob = kind[i], threshold[i], need[i], prefix[i, c], rkey[i], p[i]
                scaled, f, wi = has_factor[i], factor[i], w[i]
                row = weighted[i]
                if k == 3:
                    row[:] = zero
                    continue
                if from_delta:
                    for jj in range(length):
                        row[jj] = _load(expert, start + jj)
                else:
                    for jj in range(length):
                        row[jj] = _round(_load(expert, start + jj) - b[jj], base)
                if k == 1:
                    # Entries equal to the cut stay while fewer than `limit` came before them: a chunk wholly
                    # before or after that point needs no running count, and its loop vectorises.
                    if seen >= limit:
                        for jj in range(length):
                            row[jj] = row[jj] * np.float32(_key(row[jj], base) > cut)
                    elif c + 1 < chunks and prefix[i, c + 1] <= limit:
                        for jj in range(length):
                            row[jj] = row[jj] * np.float32(_key(row[jj], base) >= cut)
                    else:
                        for jj in range(length):
                            mag = _key(row[jj], base)
                            equal = mag == cut
                            keep = (mag > cut) | (equal & (seen < limit))
                            seen += np.int64(equal)
                            row[jj] = row[jj] * np.float32(keep)
                elif k == 2:
                    for jj in range(length):
                        row[jj] = row[jj] * np.float32(_uniform(key, start + jj) < prob)
                elif k == 4:
                    picked = chosen[i]
                    for jj in range(length):
                        row[jj] = row[jj] * np.float32(picked[start + jj])
                if scaled:
                    for jj in range(length):
                        row[jj] = _round(row[jj] * f, base)
                for jj in range(length):
                    row[jj] = _round(row[jj] * wi, base)
            # combine across experts with the element index innermost, so each step vectorises
            mixed = np.zeros(length, np.float32)
            if consensus:
                for i in range(m):
                    for jj in range(length):
                        mixed[jj] += weighted[i, jj]
                majority = np.empty(length, np.float32)
                for jj in range(length):
                    majority[jj] = np.float32(2.0) * np.float32(_round(mixed[jj], base) >= zero) - np.float32(1.0)
                    mixed[jj] = zero
                div = np.zeros(length, np.float32)
                for i in range(m):
                    wi = w[i]
                    for jj in range(length):
                        agree = np.float32(np.sign(weighted[i, jj]) == majority[jj])
                        mixed[jj] += weighted[i, jj] * agree
                        div[jj] += wi * agree
                for jj in range(length):
                    mixed[jj] = _round(mixed[jj], base)
                    d = _round(div[jj], base)
                    div[jj] = d + np.float32(d == zero)
            else:
                for i in range(m):
                    for jj in range(length):
                        mixed[jj] += weighted[i, jj]
                div = np.full(length, divisor, np.float32)
                for jj in range(length):
                    mixed[jj] = _round(mixed[jj], base)
            for jj in range(length):
                value = mixed[jj]
                if normalize:
                    value = _round(value / div[jj], base)
                if apply_lam:
                    value = _round(value * lam, base)
                _store(out, start + jj, _round(b[jj] + value, base))

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _linear(inputs, coefficients, normalize, denominator, out, chunk):
        n = out.size
        chunks = (n + chunk - 1) // chunk
        for c in prange(chunks):
            start = c * chunk
            length = min(n, start + chunk) - start
            acc = np.zeros(length, np.float32)
            for i in range(len(inputs)):
                x = inputs[i]
                coefficient = coefficients[i]
                for jj in range(length):
                    acc[jj] = _fma(_load(x, start + jj), coefficient, acc[jj])
            for jj in range(length):
                value = acc[jj] / denominator if normalize else acc[jj]
                _store(out, start + jj, _round(value, out))


    @njit(cache=True, nogil=True, error_model="numpy")
    def _delta_keys(expert, base, from_delta, keys):
        """|δ|'s magnitude keys (the order torch's sort compares in), for merge/torch_order.py."""
        for j in range(base.size):
            keys[j] = _key(_delta(expert, base, from_delta, j), base)

    def _serial(kernel):
        """The kernel compiled without threads (its own cache entry): for small tensors, waking threads costs more
        than the work, and far more on a busy machine, where a parallel call waits for its slowest thread."""
        func = kernel.py_func
        clone = FunctionType(func.__code__, func.__globals__, func.__name__ + "_serial", func.__defaults__, func.__closure__)
        clone.__qualname__ = func.__qualname__ + "_serial"
        return njit(cache=True, nogil=True, error_model="numpy")(clone)

    _SERIAL = {kernel: _serial(kernel) for kernel in (_histogram, _equal_counts, _masked_abs, _l1_exact, _combine, _linear)}


def _threads(kernel, numel: int):
    """`kernel`, or its serial twin below PARALLEL_MIN_ELEMENTS."""
    return kernel if numel >= PARALLEL_MIN_ELEMENTS else _SERIAL[kernel]


# --- entry points ----------------------------------------------------------------------------------------


class MagnitudeCut:
    """Where TIES cuts one expert's task vector: keys above `threshold` stay, and the first `need`
    entries equal to it (by index); `prefix[c]` counts those equal entries before chunk c."""

    def __init__(self, threshold: int, need: int, prefix: np.ndarray):
        self.threshold, self.need, self.prefix = threshold, need, prefix


def magnitude_cut(expert: np.ndarray, base: np.ndarray, from_delta: bool, k: int, bf16: bool, chunk: int = CHUNK) -> MagnitudeCut:
    """The exact top-k cut of |δ| by counting: one histogram pass (two for float32), plus one for ties."""
    n = expert.size
    parts = max(1, min(64, n // (1 << 16)))
    histogram = _threads(_histogram, n)
    if bf16:
        threshold, above, equal = select_from_histogram(histogram(expert, base, from_delta, 0, -1, 1 << 15, parts), k)
    else:
        high, above, _ = select_from_histogram(histogram(expert, base, from_delta, 15, -1, 1 << 16, parts), k)
        low, above_low, equal = select_from_histogram(histogram(expert, base, from_delta, 0, high, 1 << 15, parts), k - above)
        threshold, above = (high << 15) | low, above + above_low
    return _cut_with_ties(expert, base, from_delta, threshold, k - above, equal, chunk)


def magnitude_histogram(delta: np.ndarray) -> np.ndarray:
    """The histogram of a bf16 task vector's magnitude keys: the resident merger keeps it, so the cut of any
    density costs a lookup (and a tie-count pass when the cut splits a group of equal magnitudes)."""
    parts = max(1, min(64, delta.size // (1 << 16)))
    return _threads(_histogram, delta.size)(delta, delta, True, 0, -1, 1 << 15, parts)


def cuts_from_histograms(hists: list[np.ndarray], deltas: tuple[np.ndarray, ...], ks: list[int | None],
                         chunk: int = CHUNK) -> list[MagnitudeCut | None]:
    """magnitude_cuts of bf16 task vectors (from_delta) whose key histograms are known: one tie-count pass at most."""
    chunks = (deltas[0].size + chunk - 1) // chunk
    selected = [select_from_histogram(h, k) if k is not None else None for h, k in zip(hists, ks)]
    thresholds = np.array([s[0] if s is not None and k - s[1] < s[2] else -1 for s, k in zip(selected, ks)], np.int64)
    counts = None
    if (thresholds >= 0).any():
        counts = _threads(_equal_counts, deltas[0].size)(deltas, deltas[0], True, thresholds, chunk)
    cuts: list[MagnitudeCut | None] = []
    for i, (s, k) in enumerate(zip(selected, ks)):
        if s is None:
            cuts.append(None)
        elif counts is None or thresholds[i] < 0:  # the whole tie group stays: no order needed
            cuts.append(MagnitudeCut(s[0], k - s[1], np.zeros(chunks, np.int64)))
        else:
            cuts.append(MagnitudeCut(s[0], k - s[1], _exclusive_prefix(counts[i])))
    return cuts


def _cut_with_ties(expert: np.ndarray, base: np.ndarray, from_delta: bool, threshold: int, need: int, equal: int,
                   chunk: int) -> MagnitudeCut:
    chunks = (expert.size + chunk - 1) // chunk
    if need >= equal:  # the whole tie group stays: no order needed
        return MagnitudeCut(threshold, need, np.zeros(chunks, np.int64))
    counts = _threads(_equal_counts, expert.size)((expert,), base, from_delta, np.array([threshold], np.int64), chunk)[0]
    return MagnitudeCut(threshold, need, _exclusive_prefix(counts))


def _exclusive_prefix(counts: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)


BRACKET_MIN_ELEMENTS = 1 << 18
BRACKET_MAX_KEYS = 64


def magnitude_cuts(
    experts: tuple[np.ndarray, ...], base: np.ndarray, from_delta: bool, ks: list[int | None], bf16: bool, chunk: int = CHUNK,
) -> list[MagnitudeCut | None]:
    """Top-k cuts of several experts' |δ| (None where ks[i] is None), in one counting pass for large bf16 tensors.

    A strided sample brackets each threshold within a few bf16 keys; one pass over all experts counts
    the keys above each bracket and, per chunk, each key inside it — enough for the exact threshold
    and the tie prefix. An expert whose bracket misses falls back to the histogram.
    """
    wanted = [i for i, k in enumerate(ks) if k is not None]
    n = base.size
    if not bf16 or n < BRACKET_MIN_ELEMENTS or not wanted:
        return [magnitude_cut(experts[i], base, from_delta, k, bf16, chunk) if k is not None else None for i, k in enumerate(ks)]
    stride = max(1, n // (1 << 16))
    lo = np.zeros(len(experts), np.int64)
    hi = np.full(len(experts), -1, np.int64)
    for i in wanted:
        sample = np.sort(_sample_keys(experts[i], base, from_delta, stride))
        position = (n - ks[i]) / n * sample.size
        margin = int(4 * np.sqrt(sample.size)) + 2
        lo[i] = sample[max(0, int(position) - margin)]
        hi[i] = sample[min(sample.size - 1, int(position) + margin)]
    width = int(max(1, (hi - lo + 1).max()))
    cuts: list[MagnitudeCut | None] = [None] * len(experts)
    if width > BRACKET_MAX_KEYS:
        return [magnitude_cut(experts[i], base, from_delta, k, bf16, chunk) if k is not None else None for i, k in enumerate(ks)]
    above, band = _bracket_counts(base, experts, from_delta, lo, hi, width, chunk)
    for i in wanted:
        k, total_above, per_key = ks[i], int(above[i].sum()), band[i].sum(axis=0)
        if not total_above < k <= total_above + int(per_key.sum()):
            cuts[i] = magnitude_cut(experts[i], base, from_delta, k, bf16, chunk)
            continue
        offset, above_cut, _ = select_from_histogram(per_key, k - total_above)
        prefix = _exclusive_prefix(band[i, :, offset])
        cuts[i] = MagnitudeCut(int(lo[i]) + offset, k - total_above - above_cut, prefix)
    return cuts


def masked_abs_sums(
    expert: np.ndarray, base: np.ndarray, from_delta: bool, kind: int, cut: MagnitudeCut | None, rkey: int, p: float,
    dtype: torch.dtype, chosen: np.ndarray | None = None, chunk: int = CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """mergekit's rescale sums Σ|δ| and Σ|mask·δ|, summed by torch over the exact tensors it would sum."""
    n = expert.size
    out_abs = torch.empty(n, dtype=dtype)
    out_masked = torch.empty(n, dtype=dtype)
    chunks = (n + chunk - 1) // chunk
    threshold, need, prefix = (cut.threshold, cut.need, cut.prefix) if cut is not None else (0, 0, np.zeros(chunks, np.int64))
    _threads(_masked_abs, n)(expert, base, from_delta, kind, threshold, need, prefix, np.uint64(rkey), np.float32(p),
                _chosen_bytes(chosen), as_array(out_abs), as_array(out_masked), chunk)
    return out_abs.sum(), out_masked.sum()


def exact_ratio(before: int, after: int, dtype: torch.dtype) -> float | None:
    """Σ|δ| / Σ|mask·δ| from exact scaled sums, rounded once per step to the merge dtype; None below mergekit's 1e-7."""
    floor = _EPS_UNITS[dtype]
    if before < floor or after < floor:
        return None
    return float(torch.tensor(before / after, dtype=torch.float32).to(dtype))  # int / int rounds correctly


def scaled_sum(buckets: np.ndarray) -> int:
    """Σ buckets[e]·2^e as an exact integer (the common 2^-bias factor left out)."""
    return sum(int(count) << e for e, count in enumerate(buckets) if count)


def random_rescale_factors(
    base: np.ndarray, experts: tuple[np.ndarray, ...], from_delta: bool, active: list[bool], rkeys: list[int],
    ps: list[float], dtype: torch.dtype, stored: tuple[np.ndarray, ...] | None = None,
) -> list[float | None]:
    """DARE's L1 rescale factors for the counter masks, from exact sums: one pass over all experts, read-only
    unless `stored` is given (then stored[i] receives expert i's task vector, masked where active)."""
    sums, floors = _threads(_l1_exact, base.size)(
        base, experts, from_delta, np.array(active), np.array(rkeys, np.uint64), np.array(ps, np.float32),
        stored is not None, experts if stored is None else stored, L1_CHUNK,  # never written without `store`
    )
    span = FIXED_SPAN[16 if base.dtype == np.uint16 else 32]
    factors: list[float | None] = []
    for i, on in enumerate(active):
        if not on:
            factors.append(None)
            continue
        whole, kept = (_fixed_sum(sums[:, i, :, k], floors[:, i], span) for k in (0, 1))
        factors.append(exact_ratio(whole, kept, dtype))
    return factors


class UniformL1:
    """Exact Σ|δ| of one task vector split by its counter uniforms' top 16 bits: for any p that is a multiple
    of 2^-16 (every bf16 density ≥ 2^-9), Σ|mask·δ| with mask = u < p is a prefix sum, so the resident
    merger's DARE rescale factors need no pass over the tensor."""

    BUCKET_BITS = 16

    def __init__(self, delta: np.ndarray, rkey: int):
        key = magnitude_key(torch.from_numpy(delta).view(torch.bfloat16 if delta.dtype == np.uint16 else torch.float32))
        mantissa_bits, shift = (8, 7) if delta.dtype == np.uint16 else (24, 23)
        span = 62 - mantissa_bits - max(1, delta.size).bit_length()  # n values of < 2^(mantissa+span) fit in int64
        self.floor = max(1, (int(key.max()) >> shift) - span) if delta.size else 1
        sums, self._slow = _uniform_l1_buckets(delta, np.uint64(rkey), self.floor)
        self._prefix = np.concatenate(([0], np.cumsum(sums)))
        self.total = self.kept(1.0)

    def on_grid(self, p: float) -> bool:
        cut = p * (1 << self.BUCKET_BITS)
        return 0 <= cut <= 1 << self.BUCKET_BITS and cut == int(cut)

    def kept(self, p: float) -> int:
        """Σ|δ| over u < p (p on the grid) as an exact integer in units of the smallest subnormal."""
        cut = int(p * (1 << self.BUCKET_BITS))
        slow = self._slow[self._slow[:, 0] < cut]
        buckets = np.zeros(256, np.int64)
        np.add.at(buckets, slow[:, 1], slow[:, 2])
        return (int(self._prefix[cut]) << self.floor) + scaled_sum(buckets)

    def rescale_factor(self, p: float, dtype: torch.dtype) -> float | None:
        """DARE's L1 rescale factor for the mask u < p, exactly as random_rescale_factors computes it."""
        return exact_ratio(self.total, self.kept(p), dtype)


def _fixed_sum(limbs: np.ndarray, floors: np.ndarray, span: int) -> int:
    """Σ limbs[c, l]·2^(floors[c] − l·span) exactly, as a Python integer in units of the smallest subnormal
    (a limb below unit scale holds a multiple of its scale, so the right shift is exact). Limbs are
    non-negative int64: summed as 32-bit halves, numpy's int64 sums cannot overflow."""
    total = 0
    for limb in np.flatnonzero(limbs.any(axis=0)):
        column = limbs[:, limb]
        used = column != 0
        scales = floors[used] - limb * span
        values = column[used]
        for scale in np.unique(scales):
            part = values[scales == scale]
            exact = (int((part >> 32).sum()) << 32) + int((part & 0xFFFFFFFF).sum())
            total += exact << int(scale) if scale >= 0 else exact >> int(-scale)
    return total


def combine(
    base: np.ndarray, experts: tuple[np.ndarray, ...], from_delta: bool, kinds: list[int], cuts: list[MagnitudeCut | None],
    rkeys: list[int], ps: list[float], factors: list[float | None], weights: list[float], consensus: bool, normalize: bool,
    divisor: float, lam: float, out: np.ndarray, chunk: int = CHUNK, chosen: list[np.ndarray | None] | None = None,
) -> None:
    """The fused merge of one tensor into `out` (which may be `base`: each element is read before it is written);
    `chosen[i]` is expert i's explicit mask where its kind is CHOSEN."""
    m = len(experts)
    chunks = (base.size + chunk - 1) // chunk
    prefix = np.zeros((m, chunks), np.int64)
    threshold = np.zeros(m, np.int64)
    need = np.zeros(m, np.int64)
    for i, cut in enumerate(cuts):
        if cut is not None:
            threshold[i], need[i], prefix[i] = cut.threshold, cut.need, cut.prefix
    _threads(_combine, base.size)(
        base, experts, from_delta, np.array(kinds, np.int64), threshold, need, prefix,
        tuple(_chosen_bytes(c) for c in (chosen or [None] * m)), np.array(rkeys, np.uint64), np.array(ps, np.float32), np.array([f is not None for f in factors]),
        np.array([f if f is not None else 1.0 for f in factors], np.float32), np.array(weights, np.float32),
        consensus, normalize, np.float32(divisor), np.float32(lam), lam != 1.0, out, chunk,
    )


def linear(inputs: tuple[np.ndarray, ...], coefficients: np.ndarray, normalize: bool, denominator: float, out: np.ndarray) -> None:
    _threads(_linear, out.size)(inputs, coefficients.astype(np.float32), normalize, np.float32(denominator), out, CHUNK)


_NONE_CHOSEN = np.zeros(0, np.uint8)


def _chosen_bytes(mask: np.ndarray | None) -> np.ndarray:
    return _NONE_CHOSEN if mask is None else mask.view(np.uint8)


def torch_order_masks(
    experts: tuple[np.ndarray, ...], base: np.ndarray, from_delta: bool, ks: list[int | None],
) -> list[np.ndarray | None]:
    """The masks mergekit's TIES keeps (torch's argsort order at the cut; merge/torch_order.py), None where ks[i] is None.
    Experts run side by side, one per core (keys, replay and mask hold no GIL); each holds 6-12 bytes per element
    while it runs and keeps its 1-byte mask."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    wanted = [i for i, k in enumerate(ks) if k is not None]
    masks: list[np.ndarray | None] = [None] * len(experts)
    with ThreadPoolExecutor(max_workers=max(1, min(len(wanted), os.cpu_count() or 1))) as pool:
        for i, mask in zip(wanted, pool.map(lambda i: _torch_order_mask(experts[i], base, from_delta, ks[i]), wanted)):
            masks[i] = mask
    return masks


def _torch_order_mask(expert: np.ndarray, base: np.ndarray, from_delta: bool, k: int) -> np.ndarray:
    from .torch_order import kept_in_torch_order

    keys = np.empty(base.size, np.uint16 if base.dtype == np.uint16 else np.int32)
    _delta_keys(expert, base, from_delta, keys)  # serial: the threads run one expert per core
    mask = kept_in_torch_order(keys, k)
    if mask is None:  # introsort's depth limit: only the real sort knows
        magnitude = torch.from_numpy(keys.astype(np.int32) << 16 if base.dtype == np.uint16 else keys).view(torch.float32)
        mask = np.zeros(base.size, np.bool_)
        mask[torch.argsort(magnitude, descending=True)[:k].numpy()] = True
    return mask
