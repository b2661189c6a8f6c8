"""Reading checkpoints tensor by tensor without loading whole models, refusing pickle unless asked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from .safetensors_io import DTYPE_NAMES, TensorInfo, read_header, read_tensor

SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_FILES = ("pytorch_model.bin", PICKLE_INDEX)
CONFIG_KEYS = ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
               "intermediate_size", "vocab_size", "tie_word_embeddings")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the others."""


class TensorSource(Protocol):
    """What the merge engine needs from an input model: full checkpoints and LoRA experts both provide it."""

    root: Path

    @property
    def names(self) -> list[str]: ...

    def config(self) -> dict: ...

    def info(self, name: str) -> tuple[tuple[int, ...], torch.dtype]: ...

    def read(self, name: str, device: str | torch.device = "cpu") -> torch.Tensor: ...


@dataclass(frozen=True)
class Checkpoint:
    """Where each tensor of a checkpoint lives; files are opened only when a tensor is read."""

    root: Path
    files: dict[str, Path]
    infos: dict[str, TensorInfo] = field(default_factory=dict, repr=False, compare=False)
    _pickle_cache: dict[Path, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def names(self) -> list[str]:
        return list(self.files)

    def config(self) -> dict:
        path = self.root / "config.json"
        if not path.exists():
            raise CheckpointError(f"{self.root}: no config.json — a checkpoint directory needs its model config")
        return json.loads(path.read_text())

    def info(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        if name in self.infos:
            return self.infos[name].shape, self.infos[name].dtype
        tensor = self._pickled(name)
        return tuple(tensor.shape), tensor.dtype

    def read(self, name: str, device: str | torch.device = "cpu") -> torch.Tensor:
        if name not in self.files:
            raise CheckpointError(f"{self.root}: no tensor {name} in this checkpoint")
        if name in self.infos:
            tensor = read_tensor(self.infos[name])
        else:
            tensor = self._pickled(name).clone()
        return tensor if str(device) == "cpu" else tensor.to(device)

    def shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Shape and dtype name (safetensors spelling, e.g. BF16) of every tensor, from the headers only."""
        out: dict[str, tuple[tuple[int, ...], str]] = {}
        for name in self.files:
            shape, dtype = self.info(name)
            out[name] = (shape, DTYPE_NAMES.get(dtype, str(dtype)))
        return out

    def _pickled(self, name: str) -> torch.Tensor:
        file = self.files[name]
        if file not in self._pickle_cache:
            self._pickle_cache.clear()  # one pickle shard at a time keeps memory bounded
            # weights_only refuses arbitrary objects; mmap leaves tensors on disk until read.
            self._pickle_cache[file] = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        return self._pickle_cache[file][name]


def open_checkpoint(root: Path, allow_pickle: bool = False) -> Checkpoint:
    """Index a checkpoint directory: sharded or single-file safetensors; pickle only when allowed."""
    root = Path(root)
    if (root / "adapter_config.json").exists() and not (root / "config.json").exists():
        raise CheckpointError(f"{root}: this is a LoRA adapter, not a full checkpoint — declare the expert with format: lora")
    index = root / SAFETENSORS_INDEX
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        infos: dict[str, TensorInfo] = {}
        for file in sorted(set(weight_map.values())):
            path = root / file
            if not path.exists():
                raise CheckpointError(f"{root}: the index names shard {file}, which is missing")
            file_infos, _ = read_header(path)
            infos.update({n: i for n, i in file_infos.items() if weight_map.get(n) == file})
        missing = sorted(set(weight_map) - set(infos))
        if missing:
            raise CheckpointError(f"{root}: tensor {missing[0]} is in the index but not in shard {weight_map[missing[0]]}")
        ordered = {name: infos[name] for name in weight_map}
        return Checkpoint(root, {n: i.file for n, i in ordered.items()}, ordered)
    singles = sorted(root.glob("*.safetensors"))
    if singles:
        infos = {}
        for file in singles:
            infos.update(read_header(file)[0])
        return Checkpoint(root, {n: i.file for n, i in infos.items()}, infos)
    if any((root / p).exists() for p in PICKLE_FILES):
        if not allow_pickle:
            raise CheckpointError(
                f"{root}: only pickle weights (pytorch_model.bin) found; pickle can run code when loaded — "
                "convert to safetensors, or set allowPickle: true in the spec if you trust the source"
            )
        return _open_pickle(root)
    raise CheckpointError(f"{root}: no *.safetensors weights found")


def _open_pickle(root: Path) -> Checkpoint:
    index = root / PICKLE_INDEX
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return Checkpoint(root, {name: root / file for name, file in weight_map.items()})
    file = root / "pytorch_model.bin"
    state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    checkpoint = Checkpoint(root, {name: file for name in state})
    checkpoint._pickle_cache[file] = state
    return checkpoint


def check_compatible(base: TensorSource, others: dict[str, TensorSource], dtype: str | None = None) -> None:
    """Fail before any work when an expert does not share the base architecture, naming the first mismatch.

    Mixed input dtypes are refused unless `dtype` (the recipe's arithmetic dtype) says what to compute in,
    because the promoted dtype would silently change the result's precision.
    """
    base_config = base.config()
    for name, source in others.items():
        config = source.config()
        for key in CONFIG_KEYS:
            if key in base_config and key in config and base_config[key] != config[key]:
                raise CheckpointError(
                    f"expert {name!r}: config {key} is {config[key]!r}, base has {base_config[key]!r} — "
                    "experts must share the base architecture"
                )
        available = set(source.names)
        missing = [t for t in base.names if t not in available]
        if missing:
            raise CheckpointError(f"expert {name!r}: tensor {missing[0]} of the base is missing ({len(missing)} in all)")
        for tensor in base.names:
            base_shape, base_dtype = base.info(tensor)
            shape, tensor_dtype = source.info(tensor)
            if shape != base_shape:
                raise CheckpointError(
                    f"expert {name!r}: tensor {tensor} has shape {list(shape)}, base has {list(base_shape)} — "
                    "experts must share the base architecture"
                )
            if dtype in (None, "auto") and tensor_dtype != base_dtype:
                raise CheckpointError(
                    f"expert {name!r}: tensor {tensor} is {tensor_dtype}, base has {base_dtype} — "
                    "set merge.dtype (float32, bfloat16 or float16) to choose the arithmetic dtype"
                )
