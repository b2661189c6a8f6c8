"""Our safetensors reader and streaming writer agree with the reference safetensors library."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from evomerge.models.checkpoint import CheckpointError, check_compatible, open_checkpoint
from evomerge.models.safetensors_io import PlannedTensor, SafetensorsError, ShardedWriter, read_header, read_tensor

TENSORS = {
    "a.bf16": torch.randn(7, 5).to(torch.bfloat16),
    "b.f32": torch.randn(3),
    "c.f16": torch.randn(2, 2, 2).half(),
    "d.i64": torch.arange(6).view(2, 3),
    "e.bool": torch.tensor([True, False]),
    "f.empty": torch.zeros(0, 4),
}


def test_reader_returns_what_safetensors_wrote(tmp_path):
    file = tmp_path / "x.safetensors"
    save_file(TENSORS, str(file), metadata={"k": "v"})
    infos, metadata = read_header(file)
    assert metadata == {"k": "v"}
    for name, tensor in TENSORS.items():
        ours = read_tensor(infos[name])
        assert ours.dtype == tensor.dtype and torch.equal(ours, tensor), name


def test_writer_streams_shards_that_safetensors_reads(tmp_path):
    plan = [PlannedTensor(n, t.dtype, tuple(t.shape)) for n, t in TENSORS.items()]
    writer = ShardedWriter(tmp_path, plan, shard_bytes=64)
    for name, tensor in TENSORS.items():
        writer.write(name, tensor)
    writer.finish()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(TENSORS)
    for name, tensor in TENSORS.items():
        with safe_open(str(tmp_path / index["weight_map"][name]), framework="pt") as handle:
            assert torch.equal(handle.get_tensor(name), tensor)


def test_writer_refuses_tensors_out_of_plan(tmp_path):
    writer = ShardedWriter(tmp_path, [PlannedTensor("x", torch.float32, (2,))], shard_bytes=1 << 20)
    with pytest.raises(RuntimeError, match="planned \\[2\\] torch.float32, got \\[3\\]"):
        writer.write("x", torch.zeros(3))
    with pytest.raises(RuntimeError, match="expected tensor x next, got y"):
        writer.write("y", torch.zeros(2))
    with pytest.raises(RuntimeError, match="before tensor x was written"):
        writer.finish()


def test_a_corrupt_header_is_reported(tmp_path):
    file = tmp_path / "bad.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    file.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)  # 8 of the 16 bytes
    with pytest.raises(SafetensorsError, match="tensor w claims 16 bytes"):
        read_header(file)


def test_sharded_checkpoints_are_indexed_and_missing_shards_named(tmp_path):
    save_file({"x": torch.ones(2)}, str(tmp_path / "s1.safetensors"))
    save_file({"y": torch.zeros(3)}, str(tmp_path / "s2.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "s1.safetensors", "y": "s2.safetensors"}}))
    checkpoint = open_checkpoint(tmp_path)
    assert checkpoint.names == ["x", "y"] and torch.equal(checkpoint.read("y"), torch.zeros(3))
    assert checkpoint.shapes() == {"x": ((2,), "F32"), "y": ((3,), "F32")}
    (tmp_path / "s2.safetensors").unlink()
    with pytest.raises(CheckpointError, match="names shard s2.safetensors, which is missing"):
        open_checkpoint(tmp_path)


def test_check_compatible_names_the_missing_tensor(tmp_path):
    for name, tensors in (("base", {"x": torch.ones(2), "y": torch.ones(2)}), ("other", {"x": torch.ones(2)})):
        (tmp_path / name).mkdir()
        save_file(tensors, str(tmp_path / name / "model.safetensors"))
        (tmp_path / name / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="expert 'other': tensor y of the base is missing"):
        check_compatible(open_checkpoint(tmp_path / "base"), {"other": open_checkpoint(tmp_path / "other")})
    assert torch.equal(load_file(str(tmp_path / "base" / "model.safetensors"))["x"], open_checkpoint(tmp_path / "base").read("x"))
