"""Reading checkpoints tensor by tensor without loading whole models, refusing pickle unless asked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the others."""


@dataclass(frozen=True)
class Checkpoint:
    """Where each tensor of a checkpoint lives; opening files is deferred to reads."""

    root: Path
    files: dict[str, Path]

    @property
    def names(self) -> list[str]:
        return list(self.files)

    def config(self) -> dict:
        path = self.root / "config.json"
        if not path.exists():
            raise CheckpointError(f"{self.root}: no config.json — a checkpoint directory needs its model config")
        return json.loads(path.read_text())

    def read(self, name: str, device: str | torch.device = "cpu") -> torch.Tensor:
        with safe_open(str(self.files[name]), framework="pt", device=str(device)) as handle:
            return handle.get_tensor(name)

    def read_all(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        by_file: dict[Path, list[str]] = {}
        for name, file in self.files.items():
            by_file.setdefault(file, []).append(name)
        for file, names in by_file.items():
            with safe_open(str(file), framework="pt", device=str(device)) as handle:
                for name in names:
                    out[name] = handle.get_tensor(name)
        return out

    def shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Shape and dtype of every tensor, read from the safetensors headers only."""
        out: dict[str, tuple[tuple[int, ...], str]] = {}
        by_file: dict[Path, list[str]] = {}
        for name, file in self.files.items():
            by_file.setdefault(file, []).append(name)
        for file, names in by_file.items():
            with safe_open(str(file), framework="pt") as handle:
                for name in names:
                    sl = handle.get_slice(name)
                    out[name] = (tuple(sl.get_shape()), sl.get_dtype())
        return out


def open_checkpoint(root: Path, allow_pickle: bool = False) -> Checkpoint:
    root = Path(root)
    index = root / SAFETENSORS_INDEX
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return Checkpoint(root, {name: root / file for name, file in weight_map.items()})
    singles = sorted(root.glob("*.safetensors"))
    if singles:
        files: dict[str, Path] = {}
        for file in singles:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    files[name] = file
        return Checkpoint(root, files)
    if any((root / p).exists() for p in PICKLE_FILES):
        if not allow_pickle:
            raise CheckpointError(
                f"{root}: only pickle weights (pytorch_model.bin) found; pickle can run code when loaded — "
                "convert to safetensors, or set allowPickle: true in the spec if you trust the source"
            )
        raise CheckpointError(f"{root}: pickle checkpoints are allowed by the spec but not supported by this reader yet")
    raise CheckpointError(f"{root}: no *.safetensors weights found")


def check_compatible(base: Checkpoint, others: dict[str, Checkpoint]) -> None:
    """Fail before any work when an expert does not share the base architecture, naming the first mismatch."""
    reference = base.shapes()
    for name, ckpt in others.items():
        shapes = ckpt.shapes()
        missing = sorted(set(reference) - set(shapes))
        if missing:
            raise CheckpointError(f"expert {name!r}: tensor {missing[0]} of the base is missing ({len(missing)} in all)")
        for tensor, (shape, _dtype) in reference.items():
            if shapes[tensor][0] != shape:
                raise CheckpointError(
                    f"expert {name!r}: tensor {tensor} has shape {list(shapes[tensor][0])}, base has {list(shape)} — "
                    "experts must share the base architecture"
                )
