"""MergeRecipe: what one candidate is — method, inputs and per-group parameters — as plain data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .layer_path import LayerPath

@dataclass(frozen=True)
class ExpertWeights:
    """One input model and its parameters: gene name -> layer group -> value."""

    name: str
    uri: str
    params: dict[str, dict[str, float]]

    def value(self, gene: str, group: str, default: float | None = None) -> float:
        values = self.params.get(gene)
        if values is None:
            if default is None:
                raise KeyError(f"expert {self.name!r} has no {gene!r} parameter")
            return default
        return values[group] if group in values else values["all"]


@dataclass(frozen=True)
class MergeRecipe:
    method: str
    base_uri: str | None
    experts: tuple[ExpertWeights, ...]
    groups: tuple[str, ...] = ("all",)
    options: dict[str, Any] = field(default_factory=dict)
    layer_path: LayerPath | None = None  # data-flow merging; None keeps a pure parameter-space merge

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "method": self.method,
            "baseUri": self.base_uri,
            "groups": list(self.groups),
            "options": dict(sorted(self.options.items())),
            "experts": [{"name": e.name, "uri": e.uri, "params": e.params} for e in self.experts],
        }
        if self.layer_path is not None:  # absent rather than null, so digests of PS recipes never change
            data["layerPath"] = self.layer_path.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MergeRecipe":
        return cls(
            method=data["method"],
            base_uri=data.get("baseUri"),
            groups=tuple(data.get("groups", ("all",))),
            options=dict(data.get("options", {})),
            experts=tuple(
                ExpertWeights(e["name"], e["uri"], {g: dict(v) for g, v in e["params"].items()}) for e in data["experts"]
            ),
            layer_path=LayerPath.from_dict(data["layerPath"]) if data.get("layerPath") else None,
        )

    def digest(self) -> str:
        """Stable identity of the merge (same recipe → same digest), used to cache scores."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
