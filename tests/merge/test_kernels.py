"""The fused kernels reproduce the torch implementation they replace, bit for bit."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from evomerge.merge import kernels
from evomerge.merge.linear import linear as torch_linear
from evomerge.merge.methods import METHODS, get_method
from evomerge.merge.sparsify import tensor_seed
from evomerge.merge.task_arithmetic import FusedCache, merge_family


def torch_path(monkeypatch, *args, **kwargs) -> torch.Tensor:
    with monkeypatch.context() as patch:
        patch.setattr(kernels, "available", lambda *a, **k: False)
        return merge_family(*args, **kwargs)


def family(dtype: torch.dtype, n: int, numel: int, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    base = (torch.randn(numel, generator=generator) * 0.02).to(dtype)
    experts = [(base.float() + torch.randn(numel, generator=generator) * 0.003 * (i + 1)).to(dtype) for i in range(n)]
    return base, experts


@pytest.mark.parametrize("dtype,n,numel", [
    (torch.bfloat16, 3, 70001), (torch.bfloat16, 3, 300_007), (torch.float32, 3, 50003), (torch.float32, 4, 999),
])
@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "dare_ties", "dare_linear"])
def test_fused_merge_equals_torch_path(dtype, n, numel, method, monkeypatch):
    assert kernels.available(dtype, n)
    base, experts = family(dtype, n, numel)
    params = [{"weight": 0.4 + 0.3 * i, "density": [0.5, 1.0, 0.3, 0.0][i % 4]} for i in range(n)]
    for rescale, normalize, lam in [(False, False, 1.0), (True, True, 1.3)]:
        options = {"rescale": rescale, "normalize": normalize, "lambda": lam, "tie_order": "index", "mask_rng": "counter", "seed": 5}
        for from_delta in (False, True):
            inputs = [e - base for e in experts] if from_delta else experts
            args = (METHODS[method], base, inputs, from_delta, params, options, "model.layers.0.mlp.up_proj.weight")
            assert torch.equal(merge_family(*args), torch_path(monkeypatch, *args)), (rescale, normalize, from_delta)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fused_linear_equals_mergekit_style_accumulation(dtype):
    base, experts = family(dtype, 3, 40001, seed=2)
    options = {"normalize": True, "compute_dtype": None}
    params = [{"weight": w} for w in (0.3, 1.1, 0.45)]
    fused = get_method("linear").fn(None, experts, params, options, "x")
    assert torch.equal(fused, torch_linear(experts, [0.3, 1.1, 0.45], True))
    assert all(not torch.equal(fused, e) for e in experts)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_magnitude_cut_keeps_exactly_k_with_lowest_index_ties(dtype):
    base, (expert,) = family(dtype, 1, 200_003, seed=3)
    delta = (expert.float() - base.float()).to(dtype)
    magnitude = delta.abs().float()
    for density in (0.01, 0.5, 0.93):
        k = max(1, int(density * delta.numel()))
        cut = kernels.magnitude_cut(kernels.as_array(expert), kernels.as_array(base), False, k, dtype == torch.bfloat16)
        order = torch.sort(magnitude, descending=True, stable=True).indices[:k]
        expected = torch.zeros(delta.numel(), dtype=torch.bool)
        expected[order] = True
        key = kernels.magnitude_key(delta)
        kept = (key > cut.threshold).clone()
        ties = (key == cut.threshold).nonzero().flatten()[: cut.need]
        kept[ties] = True
        assert int(kept.sum()) == k
        assert torch.equal(kept, expected)


def test_one_pass_cuts_of_large_bf16_tensors_equal_the_histogram_cuts():
    base, experts = family(torch.bfloat16, 3, 400_009, seed=4)
    arrays = tuple(kernels.as_array(e) for e in experts)
    for ks in ([4_000, None, 399_000], [200_000, 3_000, 390_000]):  # brackets of different widths
        cuts = kernels.magnitude_cuts(arrays, kernels.as_array(base), False, ks, True)
        for i, k in enumerate(ks):
            if k is None:
                assert cuts[i] is None
                continue
            reference = kernels.magnitude_cut(arrays[i], kernels.as_array(base), False, k, True)
            assert (cuts[i].threshold, cuts[i].need) == (reference.threshold, reference.need)
            if reference.prefix.any():
                assert (cuts[i].prefix == reference.prefix).all()


def test_counter_uniforms_are_uniform_and_distinct_per_expert():
    u0 = kernels.counter_uniforms(kernels.expert_key(123, 0), 100_000)
    u1 = kernels.counter_uniforms(kernels.expert_key(123, 1), 100_000)
    assert u0.dtype == torch.float32 and 0 <= float(u0.min()) and float(u0.max()) < 1
    assert abs(float(u0.mean()) - 0.5) < 0.01 and abs(float((u0 < 0.3).float().mean()) - 0.3) < 0.01
    assert not torch.equal(u0, u1)
    assert torch.equal(u0, kernels.counter_uniforms(kernels.expert_key(123, 0), 100_000))


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_uniforms_drawn_on_a_device_are_the_hosts(device):
    """A GPU draws DARE's counter uniforms itself, in torch's wrapping int64 arithmetic, chunk by chunk; every bit
    must match the host's uint64 reference, including keys past 2^63 and sums that wrap."""
    for key in (kernels.expert_key(5, 0), (1 << 64) - 3, 1 << 63, 12345):
        expected = kernels.counter_uniforms(key, 50_003)
        drawn = kernels._device_uniforms(key, 50_003, torch.device(device), chunk=4096)
        assert drawn.device.type == device and torch.equal(drawn.cpu(), expected), key


def test_exact_l1_matches_a_float64_sum():
    x = (torch.randn(10_000) * torch.logspace(-4, 2, 10_000)).to(torch.bfloat16)
    exact = kernels.exact_l1(x) * 2.0**-134
    assert exact == pytest.approx(float(x.double().abs().sum()), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_rescale_factors_stay_exact_with_values_far_below_their_chunks_largest(dtype):
    """The L1 sums are fixed-point limbs below each chunk's largest value; tiny and subnormal values reach deep limbs."""
    generator = torch.Generator().manual_seed(6)
    delta = torch.randn(50_000, generator=generator) * 0.01
    delta[::97] *= 1e-12  # more binades below the chunk's largest than the fixed point spans
    delta[5::1009] = 1e-40  # subnormal in float32 and bfloat16
    delta = delta.to(dtype)
    key = kernels.expert_key(8, 0)
    fused = kernels.random_rescale_factors(kernels.as_array(delta), (kernels.as_array(delta),), True, [True], [key], [0.6], dtype)
    masked = delta * (kernels.counter_uniforms(key, delta.numel()) < 0.6)
    assert fused == [kernels.exact_ratio(kernels.exact_l1(delta), kernels.exact_l1(masked), dtype)]
    arrays = (kernels.as_array(delta),)
    limbs, _ = kernels._l1_exact(arrays[0], arrays, True, np.array([True]), np.array([key], np.uint64),
                                 np.array([0.6], np.float32), False, arrays, kernels.L1_CHUNK)
    assert limbs[:, :, 1:].any()  # the tiny values did land in the deeper limbs


@pytest.mark.parametrize(("dtype", "unit"), [(torch.bfloat16, 134), (torch.float32, 150)])
def test_exact_ratio_cuts_off_below_mergekits_epsilon_and_rounds_the_ratio_once(dtype, unit):
    """Sums are integers in units of 2^-unit: a sum counts as zero exactly when its value is below the float 1e-7."""
    edge = Fraction(1e-7) * 2**unit
    for before in (math.floor(edge) - 1, math.floor(edge), math.ceil(edge), math.ceil(edge) + 1):
        below = Fraction(before, 2**unit) < Fraction(1e-7)
        assert (kernels.exact_ratio(before, 3 << unit, dtype) is None) == below
        assert (kernels.exact_ratio(5 << unit, before, dtype) is None) == below
    before, after = (1 << 200) + 12345, (3 << 190) + 7  # the quotient needs more than float64's 53 bits
    expected = float(torch.tensor(float(Fraction(before, after)), dtype=torch.float32).to(dtype))
    assert kernels.exact_ratio(before, after, dtype) == expected


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("base_scale", [0.0, 1e-9])
def test_rescale_factors_stay_exact_when_experts_reach_far_above_the_base(dtype, base_scale):
    """The fixed-point floor is guessed from the base; task vectors many binades larger are summed again from
    their own largest value instead of overflowing."""
    generator = torch.Generator().manual_seed(9)
    base = (torch.randn(40_000, generator=generator) * base_scale).to(dtype)
    experts = [(torch.randn(40_000, generator=generator) * 3.0**i).to(dtype) for i in range(2)]
    keys = [kernels.expert_key(11, i) for i in range(2)]
    stored = tuple(np.empty(40_000, kernels.as_array(base).dtype) for _ in experts)
    fused = kernels.random_rescale_factors(kernels.as_array(base), tuple(kernels.as_array(e) for e in experts), False,
                                           [True, True], keys, [0.4, 0.7], dtype, stored)
    for i, (expert, key, p) in enumerate(zip(experts, keys, [0.4, 0.7])):
        delta = expert - base
        masked = delta * (kernels.counter_uniforms(key, delta.numel()) < p)
        assert fused[i] == kernels.exact_ratio(kernels.exact_l1(delta), kernels.exact_l1(masked), dtype)
        assert np.array_equal(stored[i], kernels.as_array(masked))


def test_fixed_sums_stay_exact_where_int64_would_overflow():
    """Chunk limbs near 2^62 at mixed scales; a limb below unit scale holds a multiple of it (the shift is exact)."""
    rng = np.random.default_rng(3)
    span = kernels.FIXED_SPAN[16]
    floors = rng.integers(1, 30, size=500).astype(np.int64)
    limbs = np.zeros((500, 2), np.int64)
    expected = 0
    for c in range(500):
        for limb in range(2):
            scale = int(floors[c]) - limb * span
            step = max(0, -scale)
            value = int(rng.integers(1 << (61 - step), 1 << (62 - step))) << step if c % 7 or not limb else 0
            limbs[c, limb] = value
            expected += value << scale if scale >= 0 else value >> -scale
    assert kernels._fixed_sum(limbs, floors, span) == expected


def test_cuts_from_cached_histograms_equal_the_counting_cuts():
    """The resident merger's TIES cut (histogram kept between candidates) is the exporter's cut, ties included."""
    base, experts = family(torch.bfloat16, 3, 300_007, seed=7)
    deltas = tuple(kernels.as_array((e.float() - base.float()).to(torch.bfloat16)) for e in experts)
    hists = [kernels.magnitude_histogram(d) for d in deltas]
    split_ties = 0
    for ks in ([150_003, None, 3], [1, 299_000, 90_001]):
        cached = kernels.cuts_from_histograms(hists, deltas, ks)
        counted = kernels.magnitude_cuts(deltas, deltas[0], True, ks, True)
        for i, k in enumerate(ks):
            if k is None:
                assert cached[i] is None
                continue
            assert (cached[i].threshold, cached[i].need) == (counted[i].threshold, counted[i].need)
            assert (cached[i].prefix == counted[i].prefix).all()
            split_ties += bool(cached[i].prefix.any())
    assert split_ties  # some cut split a group of equal magnitudes, so the tie prefix was checked too


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("method", ["dare_ties", "dare_linear"])
def test_cached_l1_buckets_give_the_uncached_dare_merge(dtype, method, monkeypatch):
    """The resident merger's DARE rescale factors from bucketed L1 sums equal the exporter's counting pass."""
    base, experts = family(dtype, 3, 300_007, seed=9)
    deltas = [(e.float() - base.float()).to(dtype) for e in experts]
    deltas[1][::50] *= 1e-13  # below the fixed-point floor: the slow path's entries take part too
    name = "model.layers.0.mlp.up_proj.weight"
    tensor_key = tensor_seed(5, name)
    cache = FusedCache(l1=[kernels.UniformL1(kernels.as_array(d), kernels.expert_key(tensor_key, i)) for i, d in enumerate(deltas)])
    options = {"rescale": True, "normalize": False, "lambda": 1.0, "tie_order": "index", "mask_rng": "counter", "seed": 5}
    on_grid = [0.5, 0.25, 0.75]  # multiples of 2^-16: every factor comes from the cache
    for densities in (on_grid, [0.3, 1.0, 0.001]):  # off the grid in float32 (and 0.001 in bf16): the pass runs
        params = [{"weight": 0.4 + 0.3 * i, "density": d} for i, d in enumerate(densities)]
        args = (METHODS[method], base, deltas, True, params, options, name)
        uncached = merge_family(*args)
        with monkeypatch.context() as patch:
            if densities is on_grid:
                patch.setattr(kernels, "random_rescale_factors", lambda *a, **k: pytest.fail("the cache was not used"))
            assert torch.equal(merge_family(*args, fused_cache=cache), uncached), densities


class _Lent:
    """A workspace as the exporter lends one: scratch memory, and a record of the inputs given back."""

    def __init__(self) -> None:
        self.given: list[torch.Tensor] = []
        self.released: list[torch.Tensor] = []

    def scratch(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        self.given.append(torch.full((numel,), 9.0, dtype=dtype))
        return self.given[-1]

    def release(self, tensor: torch.Tensor) -> None:
        self.released.append(tensor)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("method", ["dare_ties", "dare_linear"])
def test_dare_with_a_workspace_stores_masked_task_vectors_there_with_the_same_result(dtype, method):
    """The exporter lends memory: the rescale pass stores masked task vectors in it, one expert at a time, gives
    each expert back after its pass, never writes an input, and the merge is unchanged."""
    base, experts = family(dtype, 3, 300_007, seed=10)
    params = [{"weight": 0.4 + 0.3 * i, "density": d} for i, d in enumerate((0.4, 1.0, 0.7))]
    options = {"rescale": True, "normalize": False, "lambda": 1.0, "tie_order": "index", "mask_rng": "counter", "seed": 5}
    name = "model.layers.0.mlp.up_proj.weight"
    expected = merge_family(METHODS[method], base, experts, False, params, options, name)
    originals = [e.clone() for e in (base, *experts)]
    lent = _Lent()
    merged = merge_family(METHODS[method], base, experts, False, params, {**options, "workspace": lent}, name)
    assert torch.equal(merged, expected)
    assert all(torch.equal(t, o) for t, o in zip((base, *experts), originals))
    assert [t is e for t, e in zip(lent.released, experts)] == [True] * 3
    assert len(lent.given) == 2  # the first expert's masked vector went into the result
    assert torch.equal(lent.given[0], (experts[1].float() - base.float()).to(dtype))  # density 1: the plain task vector
    assert float((lent.given[1] == 0).float().mean()) == pytest.approx(0.3, abs=0.01)  # density 0.7: masked


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fused_ties_in_mergekits_tie_order_equals_torchs_argsort(dtype, monkeypatch):
    """The exporter's default: each expert's kept set is argsort's, ties at the cut included, fused and unfused."""
    from evomerge.merge import sparsify

    base, experts = family(dtype, 3, 300_007, seed=4)
    params = [{"weight": 0.4 + 0.3 * i, "density": [0.3, 0.5, 0.9][i]} for i in range(3)]
    for rescale in (False, True):
        options = {"rescale": rescale, "normalize": True, "lambda": 1.0, "tie_order": "mergekit", "mask_rng": "counter", "seed": 5}
        for from_delta in (False, True):
            inputs = [e - base for e in experts] if from_delta else experts
            args = (METHODS["ties"], base, inputs, from_delta, params, options, "model.layers.0.mlp.up_proj.weight")
            fused = merge_family(*args)
            with monkeypatch.context() as patch:
                patch.setattr(sparsify, "kept_in_torch_order", lambda keys, k: None)  # the real argsort
                assert torch.equal(fused, torch_path(monkeypatch, *args)), (rescale, from_delta)
            index = merge_family(*args[:5], {**options, "tie_order": "index"}, args[6])
            if dtype == torch.bfloat16:
                assert not torch.equal(fused, index)  # the ties at the cut are real here
