"""Running and exporting a layer path (Sakana's data-flow merging).

In process, `PathModel` swaps a live transformers model's decoder layers for the hop list: each hop is
a clone of its source layer that shares the source's parameters (no weights are copied) and has its own
layer index, so every hop keeps its own KV cache, and multiplies the residual stream by its scale first.

Exported, the path becomes a plain checkpoint of the same architecture with one layer per hop. For a
pre-norm block f(x) = x + A(n(x)) + M(n(x + A(n(x)))) with scale-invariant norms n, feeding s·x gives
f(s·x) = s·f′(x), where f′ is f with its attention-output and MLP-down projections divided by s. By
induction the real stream after hop j is Pⱼ·yⱼ with Pⱼ = s₁…sⱼ, where yⱼ is the stream of the exported
model whose hop j has those projections divided by Pⱼ; the final norm removes the leftover Pₙ. The
identity is exact for ε = 0; the norms' ε makes it approximate where activations are tiny. Scales must
be positive (a norm commutes with −1 only up to sign).
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Mapping

import torch
from torch import nn

from .layer_path import LayerPath, LayerPathError

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
# Output projections of the attention and MLP branches (Llama, Mistral, Qwen2/3, Phi-3 naming).
FOLD_SUFFIXES = ("self_attn.o_proj.weight", "self_attn.o_proj.bias", "mlp.down_proj.weight", "mlp.down_proj.bias")
# Norms on a branch's output make the block not scale-equivariant by projection scaling alone.
_POST_BRANCH_NORMS = ("pre_feedforward_layernorm", "post_feedforward_layernorm")


def layer_of(name: str) -> tuple[int, str, str] | None:
    """(layer index, prefix up to 'layers.', suffix after the index) of a block tensor, else None."""
    match = _LAYER.search(name)
    if match is None:
        return None
    return int(match.group(1)), name[: match.start(1)], name[match.end(1) + 1:]


def check_foldable(names: list[str], model_type: str | None) -> list[str]:
    """The layer-0 tensor suffixes of a model whose hop scales can be folded; refuses other blocks."""
    suffixes = [parts[2] for parts in map(layer_of, names) if parts is not None and parts[0] == 0]
    if any(norm in s for s in suffixes for norm in _POST_BRANCH_NORMS):
        raise LayerPathError(
            f"model type {model_type!r} normalises branch outputs; folding hop scales into its output projections "
            "would be wrong — export this path only for pre-norm blocks (Llama, Mistral, Qwen)"
        )
    for needed in ("self_attn.o_proj.weight", "mlp.down_proj.weight"):
        if needed not in suffixes:
            raise LayerPathError(
                f"model type {model_type!r} has no {needed} in its layers; hop scales fold only into "
                "self_attn.o_proj and mlp.down_proj"
            )
    return suffixes


def cumulative_scales(path: LayerPath) -> list[float]:
    """P_j = s_1·…·s_j for every hop j."""
    return list(itertools.accumulate((h.scale for h in path.hops), lambda a, b: a * b))


def fold(suffix: str, tensor: torch.Tensor, cumulative: float) -> torch.Tensor:
    """Divide a hop's output projections by its cumulative scale, in the tensor's dtype (as mergekit's passthrough scale)."""
    if suffix in FOLD_SUFFIXES and cumulative != 1.0:
        return tensor * (1.0 / cumulative)
    return tensor


def path_config(config: dict, path: LayerPath, configs: Mapping[str, dict]) -> dict:
    """Model A's config with one layer per hop (per-layer settings follow each hop's source layer)."""
    out = dict(config)
    out["num_hidden_layers"] = len(path.hops)
    if isinstance(config.get("layer_types"), list):
        out["layer_types"] = [configs[h.model]["layer_types"][h.layer] for h in path.hops]
    return out


class _Hop(nn.Module):
    """One hop: the residual stream times the hop's scale, through a parameter-sharing layer clone."""

    def __init__(self, layer: nn.Module, scale: float):
        super().__init__()
        self.layer = layer
        self.scale = scale
        if hasattr(layer, "attention_type"):
            self.attention_type = layer.attention_type

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        if self.scale != 1.0:
            hidden_states = hidden_states * self.scale
        return self.layer(hidden_states, *args, **kwargs)


def _clone_sharing(layer: nn.Module, index: int) -> nn.Module:
    memo = {id(t): t for t in itertools.chain(layer.parameters(), layer.buffers())}
    clone = copy.deepcopy(layer, memo)
    for module in clone.modules():
        if hasattr(module, "layer_idx"):
            module.layer_idx = index
    return clone


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise LayerPathError(f"{type(model).__name__}: no decoder `layers` list to run a path through")
    return layers


class PathModel:
    """Runs layer paths inside a live transformers model (model A) without materialising them.

    `others` maps the names of the path's other models to their models (only their layers are used).
    Model A's weights stay where they are, so a resident merger can keep re-merging A in place (capture
    its state_dict before installing a path); `set_path` swaps the hop list per candidate.
    """

    def __init__(self, model: nn.Module, name: str, others: Mapping[str, nn.Module] | None = None):
        self.model = model
        self.name = name
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
        self._decoder = decoder
        self._layers = {name: list(decoder_layers(model))}
        for other, m in (others or {}).items():
            self._layers[other] = list(decoder_layers(m))
        self._original = (model.config.num_hidden_layers, copy.copy(getattr(model.config, "layer_types", None)))
        self._layer_types = {name: self._original[1]}
        for other, m in (others or {}).items():
            self._layer_types[other] = getattr(m.config, "layer_types", None)

    def set_path(self, path: LayerPath) -> None:
        path.validate({name: len(layers) for name, layers in self._layers.items()})
        if path.embed_model != self.name:
            raise LayerPathError(f"path takes embeddings from {path.embed_model!r}, but this model is {self.name!r}")
        hops = [_Hop(_clone_sharing(self._layers[h.model][h.layer], j), h.scale) for j, h in enumerate(path.hops)]
        self._decoder.layers = nn.ModuleList(hops)
        self.model.config.num_hidden_layers = len(hops)
        if self._original[1] is not None:
            self.model.config.layer_types = [self._layer_types[h.model][h.layer] for h in path.hops]

    def reset(self) -> None:
        """Back to model A's own layers."""
        self._decoder.layers = nn.ModuleList(self._layers[self.name])
        self.model.config.num_hidden_layers = self._original[0]
        if self._original[1] is not None:
            self.model.config.layer_types = list(self._original[1])
