"""Data-flow (layer path) merging as plain data: which layer runs at each hop, and the hop's input scale.

Sakana's DFS lays the M layers of its models out in order, repeats that order r times and evolves an
indicator over the T = M·r slots: slot t is on iff I_t > 0, and the path is the ordered list of active
slots. Model A (the first model) supplies the embeddings, final norm and head; the path starts with
A's first layer and ends with A's last layer. Each hop multiplies the residual stream by its scale before
running its layer (one scalar per hop, as in Sakana's released inference code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

MERGED = "merged"  # the recipe's own parameter-space merge, used as a model of the path (PS + DFS)
BASE = "base"  # the recipe's base model


class LayerPathError(ValueError):
    """A layer path that cannot be built or exported."""


@dataclass(frozen=True)
class Hop:
    model: str
    layer: int
    scale: float = 1.0


@dataclass(frozen=True)
class LayerPath:
    """models[0] is A; `sources` gives URIs of path models that are neither the base nor a recipe expert."""

    models: tuple[str, ...]
    hops: tuple[Hop, ...]
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def embed_model(self) -> str:
        return self.models[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "hops": [[h.model, h.layer, h.scale] for h in self.hops],
            "sources": dict(sorted(self.sources.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LayerPath":
        return cls(
            models=tuple(data["models"]),
            hops=tuple(Hop(str(m), int(l), float(s)) for m, l, s in data["hops"]),
            sources=dict(data.get("sources", {})),
        )

    def validate(self, layers: dict[str, int]) -> None:
        """Check the path against each model's depth: known models, layers in range, positive scales."""
        if not self.hops:
            raise LayerPathError("layer path has no hops")
        for i, hop in enumerate(self.hops):
            if hop.model not in self.models:
                raise LayerPathError(f"hop {i}: model {hop.model!r} is not one of the path's models {list(self.models)}")
            if hop.model not in layers:
                raise LayerPathError(f"hop {i}: no checkpoint for path model {hop.model!r}")
            if not 0 <= hop.layer < layers[hop.model]:
                raise LayerPathError(f"hop {i}: layer {hop.layer} of {hop.model!r}, which has {layers[hop.model]} layers")
            if not hop.scale > 0:
                raise LayerPathError(
                    f"hop {i}: scale {hop.scale} — scales must be positive (norms are invariant only to positive factors)"
                )


def decode_path(
    indicator: Sequence[float],
    models: Sequence[str],
    layers: Sequence[int],
    repeats: int,
    scales: Sequence[float] | None = None,
    sources: dict[str, str] | None = None,
) -> LayerPath:
    """The path of an indicator over T = M·r slots (slot t is model/layer t mod M, active iff I_t > 0).

    Slot 0 (A's first layer) is always on; the path ends at A's last layer in the last repetition, so
    active slots after it are dropped. `scales` (one per slot, default 1) gives each hop's input scale.
    """
    total = sum(layers)
    slots = total * repeats
    if len(indicator) != slots:
        raise LayerPathError(f"indicator has {len(indicator)} entries; {len(models)} models × {repeats} repeats need {slots}")
    if scales is not None and len(scales) != slots:
        raise LayerPathError(f"scales has {len(scales)} entries; the path has {slots} slots")
    owner: list[tuple[str, int]] = [(m, layer) for m, n in zip(models, layers) for layer in range(n)]
    last = (repeats - 1) * total + layers[0] - 1
    active = [t for t in range(last) if t == 0 or indicator[t] > 0] + [last]
    hops = tuple(Hop(*owner[t % total], float(scales[t]) if scales is not None else 1.0) for t in active)
    return LayerPath(models=tuple(models), hops=hops, sources=dict(sources or {}))
