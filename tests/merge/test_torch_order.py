"""Replaying std::sort's steps that decide the cut keeps exactly the entries torch.argsort(descending=True)[:k] keeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evomerge.merge.torch_order import kept_in_torch_order


def argsort_kept(values: torch.Tensor, k: int) -> np.ndarray:
    kept = torch.zeros(values.numel(), dtype=torch.bool)
    kept[torch.argsort(values, descending=True)[:k]] = True
    return kept.numpy()


def finetune_delta(n: int, seed: int) -> torch.Tensor:
    """|δ| of a bf16 fine-tune: 40 % of the entries moved by a few bf16 steps, so magnitudes tie in large groups."""
    generator = torch.Generator().manual_seed(seed)
    base = (torch.randn(n, generator=generator) * 0.02).to(torch.bfloat16)
    moved = torch.rand(n, generator=generator) < 0.4
    expert = (base.float() + torch.randn(n, generator=generator) * 1e-3 * moved).to(torch.bfloat16)
    return (expert - base).abs().float()


DISTRIBUTIONS = {
    "bf16-finetune": finetune_delta,
    "all-equal": lambda n, seed: torch.zeros(n),
    "three-values": lambda n, seed: torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(seed)).float(),
    "continuous": lambda n, seed: torch.randn(n, generator=torch.Generator().manual_seed(seed)).abs(),
}


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("n", [1, 2, 16, 17, 33, 1000, 65_537, 1_000_003])
def test_the_kept_set_is_torchs(distribution, n):
    values = DISTRIBUTIONS[distribution](n, n)
    for density in (0.001, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999):
        k = max(1, int(density * n))
        kept = kept_in_torch_order(values.view(torch.int32).numpy(), k)
        assert kept is not None
        assert np.array_equal(kept, argsort_kept(values, k)), (distribution, n, k)


def test_bf16_keys_decide_as_their_float_values_do():
    """The fused path compares bf16 magnitude bits (uint16); torch compares the float32 values."""
    values = finetune_delta(300_001, 5)
    bits = values.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    for density in (0.3, 0.7):
        k = int(density * values.numel())
        assert np.array_equal(kept_in_torch_order(bits, k), argsort_kept(values, k))


def test_ties_at_the_cut_are_not_kept_by_index():
    """The case this module exists for: the lowest-index rule and torch's order keep different tied entries."""
    values = finetune_delta(200_003, 9)
    k = int(0.3 * values.numel())
    threshold = values.sort(descending=True).values[k - 1]
    kept = kept_in_torch_order(values.view(torch.int32).numpy(), k)
    tied = (values == threshold).numpy()
    by_index = np.flatnonzero(tied)[: k - int((values > threshold).sum())]
    assert tied.sum() > 1000 and not kept[by_index].all()
