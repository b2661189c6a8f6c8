"""The fused kernels reproduce the torch implementation they replace, bit for bit."""

from __future__ import annotations

import pytest
import torch

from evomerge.merge import kernels
from evomerge.merge.linear import linear as torch_linear
from evomerge.merge.methods import METHODS, get_method
from evomerge.merge.task_arithmetic import merge_family


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


def test_exact_l1_matches_a_float64_sum():
    x = (torch.randn(10_000) * torch.logspace(-4, 2, 10_000)).to(torch.bfloat16)
    exact = kernels.exact_l1(x) * 2.0**-134
    assert exact == pytest.approx(float(x.double().abs().sum()), rel=1e-12)
