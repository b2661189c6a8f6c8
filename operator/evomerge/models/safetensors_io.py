"""The safetensors file format, read and written with plain file I/O.

Reading with `readinto` into a fresh tensor (instead of through a memory map) keeps a file's pages out of
the process's resident set, so a streaming merge holds one tensor per input and nothing else. Writing
plans each shard's header before any tensor exists, so merged tensors go straight to their offsets in
the file: no shard buffer and no serialisation copy.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

import torch

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """A safetensors file whose header or size is inconsistent."""


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in a file and what it is, from the header alone."""

    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    nbytes: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def read_header(file: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse a file's header: tensor infos by name, and the free-form metadata."""
    file = Path(file)
    size = file.stat().st_size
    with open(file, "rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{file}: too short to be a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > min(_MAX_HEADER, size - 8):
            raise SafetensorsError(f"{file}: header length {length} does not fit the file — the file is corrupt")
        header = json.loads(handle.read(length))
    data_start = 8 + length
    metadata = header.pop("__metadata__", None) or {}
    infos: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        dtype = DTYPES.get(entry["dtype"])
        if dtype is None:
            raise SafetensorsError(f"{file}: tensor {name} has unsupported dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        shape = tuple(int(d) for d in entry["shape"])
        info = TensorInfo(file, dtype, shape, data_start + begin, end - begin)
        if info.nbytes != info.numel * dtype.itemsize or data_start + end > size:
            raise SafetensorsError(
                f"{file}: tensor {name} claims {info.nbytes} bytes for shape {list(shape)} {entry['dtype']} — the file is corrupt"
            )
        infos[name] = info
    return infos, metadata


def read_tensor(info: TensorInfo, handle: BinaryIO | None = None) -> torch.Tensor:
    """Read one tensor into newly allocated CPU memory (no memory map)."""
    out = torch.empty(info.shape, dtype=info.dtype)
    if info.nbytes == 0:
        return out
    view = memoryview(out.view(-1).view(torch.uint8).numpy())
    if handle is None:
        with open(info.file, "rb") as own:
            _read_exact(own, info, view)
    else:
        _read_exact(handle, info, view)
    return out


def _read_exact(handle: BinaryIO, info: TensorInfo, view: memoryview) -> None:
    handle.seek(info.start)
    got = handle.readinto(view)
    if got != info.nbytes:
        raise SafetensorsError(f"{info.file}: short read at offset {info.start} ({got} of {info.nbytes} bytes)")


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for d in self.shape:
            n *= d
        return n


class ShardedWriter:
    """Writes a planned set of tensors into safetensors shards, each tensor streamed to its offset.

    The plan (names, dtypes, shapes, in write order) fixes shard boundaries and headers up front, so
    `write` needs only the tensor at hand; tensors must arrive in plan order.
    """

    def __init__(self, out_dir: Path, plan: Iterable[PlannedTensor], shard_bytes: int, metadata: dict[str, str] | None = None):
        self.out_dir = Path(out_dir)
        self.metadata = {"format": "pt", **(metadata or {})}
        self.shards: list[list[PlannedTensor]] = [[]]
        size = 0
        for item in plan:
            if self.shards[-1] and size + item.nbytes > shard_bytes:
                self.shards.append([])
                size = 0
            self.shards[-1].append(item)
            size += item.nbytes
        self._queue = [(i, item) for i, shard in enumerate(self.shards) for item in shard]
        self._next = 0
        self._handle: BinaryIO | None = None
        self._open_shard = -1

    def file_name(self, shard: int) -> str:
        if len(self.shards) == 1:
            return "model.safetensors"
        return f"model-{shard + 1:05d}-of-{len(self.shards):05d}.safetensors"

    def write(self, name: str, tensor: torch.Tensor) -> None:
        shard, item = self._queue[self._next]
        if name != item.name:
            raise RuntimeError(f"writer expected tensor {item.name} next, got {name}")
        if tuple(tensor.shape) != item.shape or tensor.dtype != item.dtype:
            raise RuntimeError(
                f"tensor {name}: planned {list(item.shape)} {item.dtype}, got {list(tensor.shape)} {tensor.dtype}"
            )
        if shard != self._open_shard:
            self._start_shard(shard)
        data = tensor.detach().to("cpu").contiguous()
        if item.nbytes:
            assert self._handle is not None
            self._handle.write(memoryview(data.view(-1).view(torch.uint8).numpy()))
        self._next += 1
        if self._next == len(self._queue) or self._queue[self._next][0] != shard:
            self._close_shard()

    def _start_shard(self, shard: int) -> None:
        self._close_shard()
        header: dict[str, object] = {"__metadata__": self.metadata}
        offset = 0
        for item in self.shards[shard]:
            header[item.name] = {
                "dtype": DTYPE_NAMES[item.dtype], "shape": list(item.shape), "data_offsets": [offset, offset + item.nbytes],
            }
            offset += item.nbytes
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        self._handle = open(self.out_dir / self.file_name(shard), "wb")
        self._handle.write(struct.pack("<Q", len(blob)))
        self._handle.write(blob)
        self._open_shard = shard

    def _close_shard(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def finish(self) -> None:
        """Close the last shard and, for more than one shard, write the index."""
        if self._next != len(self._queue):
            missing = self._queue[self._next][1].name
            raise RuntimeError(f"export stopped before tensor {missing} was written")
        self._close_shard()
        if len(self.shards) == 1 and not self.shards[0]:
            self._start_shard(0)
            self._close_shard()
        if len(self.shards) > 1:
            weight_map = {item.name: self.file_name(i) for i, shard in enumerate(self.shards) for item in shard}
            total = sum(item.nbytes for shard in self.shards for item in shard)
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (self.out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))

    def abort(self) -> None:
        self._close_shard()
