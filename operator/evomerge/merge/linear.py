"""linear: Σ wᵢθᵢ (÷ Σ wᵢ when normalising), no base — mergekit 0.1.5's linear_merge, op for op.

Accumulation runs in float32 (float64 for float64 inputs) with float32 coefficients, and the result is
cast back to the inputs' dtype, as 0.1.5 does.
"""

from __future__ import annotations

import torch


def linear(tensors: list[torch.Tensor], weights: list[float], normalize: bool) -> torch.Tensor:
    first = tensors[0]
    if not first.is_floating_point():
        raise TypeError("linear merging needs floating-point tensors")
    dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
    # mergekit packs one tensor as a batch of one: [1, *shape] with coefficients [1, n].
    weight = torch.tensor([weights], dtype=dtype, device=first.device)
    shape = (1,) * (first.ndim + 1)
    result = torch.zeros((1, *first.shape), dtype=dtype, device=first.device)
    for tensor, coefficient in zip(tensors, weight.unbind(1)):
        result.addcmul_(tensor.unsqueeze(0), coefficient.reshape(shape))
    if normalize:
        result.div_(weight.sum(dim=1).reshape(shape))
    return result.to(first.dtype).squeeze(0)
