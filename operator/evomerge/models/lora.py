"""LoRA adapters in PEFT format, and an expert that presents base + adapter as full weights.

A LoRA expert enters every merge method as the task vector τ = round(W + B·A·scale) − W (the EvoGM
setting): the sum is formed in float32 and rounded once to the base tensor's dtype, exactly what
`merge_and_unload` yields for float32 weights.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import CheckpointError, TensorSource
from .safetensors_io import TensorInfo, read_header, read_tensor

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"
_PREFIX = "base_model.model."
_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[A-Za-z0-9_]+)?\.weight$")


@dataclass(frozen=True)
class LoraModule:
    """One adapted linear layer: the base tensor it changes and how B·A is scaled."""

    module: str
    target: str
    rank: int
    scaling: float
    fan_in_fan_out: bool


class LoraAdapter:
    """The factors of a PEFT LoRA adapter, read lazily; `delta` gives the dense update of one base tensor."""

    def __init__(self, root: Path, config: dict, modules: dict[str, LoraModule], factors: dict[str, tuple[object, object]]):
        self.root = root
        self.adapter_config = config
        self.modules = modules  # by base tensor name
        self._factors = factors  # base tensor name -> (A, B) as TensorInfo or tensor

    @property
    def targets(self) -> list[str]:
        return list(self.modules)

    def factors(self, target: str, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self._factors[target]
        a_t = read_tensor(a) if isinstance(a, TensorInfo) else a
        b_t = read_tensor(b) if isinstance(b, TensorInfo) else b
        return a_t.to(device), b_t.to(device)

    def delta(self, target: str, device: str | torch.device = "cpu") -> torch.Tensor:
        """B·A·scale in float32, laid out like the base tensor (PEFT's get_delta_weight)."""
        module = self.modules[target]
        a, b = self.factors(target, device)
        product = b.float() @ a.float()
        if module.fan_in_fan_out:
            product = product.T
        return product * module.scaling


def open_lora_adapter(root: Path, allow_pickle: bool = False) -> LoraAdapter:
    """Read a PEFT LoRA adapter directory, refusing features whose update is not B·A·scale."""
    root = Path(root)
    config_path = root / ADAPTER_CONFIG
    if not config_path.exists():
        raise CheckpointError(f"{root}: no {ADAPTER_CONFIG} — a LoRA expert must be a PEFT adapter directory")
    config = json.loads(config_path.read_text())
    _check_supported(root, config)
    tensors = _adapter_tensors(root, allow_pickle)
    pairs: dict[str, dict[str, object]] = {}
    for key, value in tensors.items():
        if "lora_embedding" in key or "lora_magnitude" in key:
            raise CheckpointError(f"{root}: adapter tensor {key} is an embedding/DoRA update — only linear LoRA is supported")
        match = _KEY.match(key[len(_PREFIX):] if key.startswith(_PREFIX) else key)
        if match is None:
            raise CheckpointError(f"{root}: adapter tensor {key} is not a lora_A/lora_B factor — unsupported adapter content")
        pairs.setdefault(match["module"], {})[match["which"]] = value
    modules: dict[str, LoraModule] = {}
    factors: dict[str, tuple[object, object]] = {}
    for module, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise CheckpointError(f"{root}: module {module} has lora_{'A' if 'A' in pair else 'B'} but not its partner factor")
        rank = _shape(pair["A"])[0]
        alpha = _pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", 8))
        scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        target = f"{module}.weight"
        modules[target] = LoraModule(module, target, rank, float(scaling), bool(config.get("fan_in_fan_out", False)))
        factors[target] = (pair["A"], pair["B"])
    return LoraAdapter(root, config, modules, factors)


def _check_supported(root: Path, config: dict) -> None:
    if config.get("peft_type", "LORA") != "LORA":
        raise CheckpointError(f"{root}: peft_type {config['peft_type']} — only LoRA adapters can be merged")
    for flag in ("use_dora", "lora_bias"):
        if config.get(flag):
            raise CheckpointError(f"{root}: {flag} is set — its update is not B·A·scale, so it cannot be merged as a task vector")
    if config.get("modules_to_save"):
        raise CheckpointError(f"{root}: modules_to_save {config['modules_to_save']} carries full tensors — not supported for LoRA experts")


def _adapter_tensors(root: Path, allow_pickle: bool) -> dict[str, object]:
    weights = root / ADAPTER_WEIGHTS
    if weights.exists():
        return dict(read_header(weights)[0])
    if (root / ADAPTER_PICKLE).exists():
        if not allow_pickle:
            raise CheckpointError(
                f"{root}: adapter weights are pickle ({ADAPTER_PICKLE}); pickle can run code when loaded — "
                "convert to safetensors, or set allowPickle: true if you trust the source"
            )
        return dict(torch.load(root / ADAPTER_PICKLE, map_location="cpu", weights_only=True))
    raise CheckpointError(f"{root}: no {ADAPTER_WEIGHTS} in the adapter directory")


def _shape(value: object) -> tuple[int, ...]:
    return value.shape if isinstance(value, TensorInfo) else tuple(value.shape)  # type: ignore[attr-defined]


def _pattern_value(patterns: dict[str, float], module: str, default: float) -> float:
    """PEFT's rank/alpha pattern rule: the first key matching the end of the module path."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


class LoraExpert:
    """A LoRA adapter seen as a full checkpoint of its base: tensors it adapts are W + B·A·scale."""

    def __init__(self, base: TensorSource, adapter: LoraAdapter):
        missing = [t for t in adapter.targets if t not in set(base.names)]
        if missing:
            raise CheckpointError(f"{adapter.root}: adapter targets {missing[0]}, which the base model does not have")
        for target, module in adapter.modules.items():
            shape, _ = base.info(target)
            a, b = adapter._factors[target]
            out, inp = (_shape(b)[0], _shape(a)[1]) if not module.fan_in_fan_out else (_shape(a)[1], _shape(b)[0])
            if tuple(shape) != (out, inp):
                raise CheckpointError(
                    f"{adapter.root}: factors of {module.module} give shape {[out, inp]}, base tensor {target} is {list(shape)}"
                )
        self.base = base
        self.adapter = adapter
        self.root = adapter.root

    @property
    def names(self) -> list[str]:
        return self.base.names

    def config(self) -> dict:
        return self.base.config()

    def info(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        return self.base.info(name)

    def read(self, name: str, device: str | torch.device = "cpu") -> torch.Tensor:
        weight = self.base.read(name, device)
        if name not in self.adapter.modules:
            return weight
        return (weight.float() + self.adapter.delta(name, device)).to(weight.dtype)


def is_lora_dir(root: Path) -> bool:
    return (Path(root) / ADAPTER_CONFIG).exists()
