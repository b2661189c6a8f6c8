"""Magnitude selection: exact top-k on large tensors, tie order, and cached ranks agreeing with it."""

from __future__ import annotations

import torch

from evomerge.merge.sparsify import kth_largest, magnitude_mask, magnitude_ranks, sparsify_magnitude, top_k_mask


def test_kth_largest_is_exact_on_large_tensors_with_many_ties():
    generator = torch.Generator().manual_seed(0)
    values = (torch.randn(600_001, generator=generator) * 0.01).to(torch.bfloat16).abs().float()  # heavy ties
    ordered = values.sort(descending=True).values
    for k in (1, 17, 300_000, 599_999):
        assert kth_largest(values, k) == ordered[k - 1]


def test_kth_largest_falls_back_when_the_sample_is_unrepresentative():
    values = torch.zeros(1_000_000)
    values[1::64] = torch.arange(1, 15_626, dtype=torch.float32)  # a strided sample sees only zeros
    assert kth_largest(values, 10) == values.sort(descending=True).values[9]


def test_top_k_mask_breaks_ties_by_lowest_index():
    magnitude = torch.tensor([1.0, 3.0, 2.0, 2.0, 2.0, 0.5])
    assert top_k_mask(magnitude, 3).tolist() == [False, True, True, True, False, False]


def test_ranks_reproduce_the_mask_of_every_density():
    generator = torch.Generator().manual_seed(1)
    delta = (torch.randn(4096, generator=generator) * 0.01).to(torch.bfloat16)
    ranks = magnitude_ranks(delta, "index")
    for density in (0.05, 0.33, 0.9):
        assert torch.equal(sparsify_magnitude(delta, density, True, ranks=ranks), sparsify_magnitude(delta, density, True))
        assert torch.equal(ranks < max(1, int(density * delta.numel())), magnitude_mask(delta, density))


def test_mergekit_tie_order_uses_mergekits_argsort():
    delta = torch.tensor([0.5, -0.5, 0.5, 0.25, -0.5, 0.1] * 50)
    expected = torch.zeros(delta.numel(), dtype=torch.bool)
    expected[torch.argsort(delta.abs().float(), descending=True)[:100]] = True
    assert torch.equal(magnitude_mask(delta, 100 / 300, "mergekit"), expected)
