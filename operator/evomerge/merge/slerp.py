"""slerp between the base (t = 0) and one other model (t = 1) — mergekit 0.1.5's slerp, op for op.

The tensors are treated as one flattened vector each; norms and the dot product are accumulated in
float32 over the same 1M-element chunks mergekit uses, because the chunking changes the rounding.
"""

from __future__ import annotations

import torch

DOT_THRESHOLD = 0.9995
EPS = 1e-8
_CHUNK_ELEMENTS = 1024 * 1024


def slerp(t: float, base: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    if not base.is_floating_point():
        raise TypeError("slerp needs floating-point tensors")
    dtype = torch.float64 if base.dtype == torch.float64 else torch.float32
    a = base.reshape(1, -1)
    b = other.reshape(1, -1)
    tt = torch.tensor([t], dtype=dtype, device=base.device).reshape(-1, 1)
    if not a.shape[1]:
        return ((1 - tt) * a + tt * b).reshape(base.shape).to(base.dtype)
    chunk = _CHUNK_ELEMENTS
    norm_a_parts, norm_b_parts = [], []
    for start in range(0, a.shape[1], chunk):
        norm_a_parts.append(torch.linalg.vector_norm(a[:, start:start + chunk].to(dtype), dim=1, keepdim=True))
        norm_b_parts.append(torch.linalg.vector_norm(b[:, start:start + chunk].to(dtype), dim=1, keepdim=True))
    norm_a = torch.linalg.vector_norm(torch.stack(norm_a_parts), dim=0)
    norm_b = torch.linalg.vector_norm(torch.stack(norm_b_parts), dim=0)
    norm_a = torch.where(norm_a > EPS, norm_a, 1)
    norm_b = torch.where(norm_b > EPS, norm_b, 1)
    dot_parts = []
    for start in range(0, a.shape[1], chunk):
        x = a[:, start:start + chunk].to(dtype) / norm_a
        y = b[:, start:start + chunk].to(dtype) / norm_b
        dot_parts.append((x * y).sum(dim=1, keepdim=True))
    dot = torch.stack(dot_parts).sum(dim=0).clamp(-1, 1)
    linear = dot.abs() > DOT_THRESHOLD
    theta = torch.acos(torch.where(linear, 0, dot))
    sin_theta = torch.sin(theta)
    coef_a = torch.where(linear, 1 - tt, torch.sin((1 - tt) * theta) / sin_theta)
    coef_b = torch.where(linear, tt, torch.sin(tt * theta) / sin_theta)
    result = torch.empty_like(a)
    for start in range(0, a.shape[1], chunk):
        x = a[:, start:start + chunk].to(dtype)
        y = b[:, start:start + chunk].to(dtype)
        result[:, start:start + chunk] = coef_a * x + coef_b * y
    return result.reshape(base.shape)
