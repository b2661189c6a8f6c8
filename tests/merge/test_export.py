"""The exporter writes a loadable Hugging Face checkpoint, and refuses bad inputs before writing anything."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from evomerge.merge.apply import RecipeError
from evomerge.merge.export import _ExportMemory, export_merge
from evomerge.merge.inputs import open_recipe_inputs
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.models.checkpoint import CheckpointError, open_checkpoint
from tests.support.tiny_models import build_family

from .conftest import N_EXPERTS, differing, export_family, load_dir


def ties(family, **options) -> MergeRecipe:
    return MergeRecipe("ties", str(family["base"]), tuple(
        ExpertWeights(f"expert{i}", str(family[f"expert{i}"]), {"weight": {"all": 0.6}, "density": {"all": 0.5}})
        for i in range(N_EXPERTS)
    ), options=options)


def test_small_shards_give_an_index_and_the_same_model(family32, tmp_path):
    whole = export_family(ties(family32), family32, tmp_path / "whole")
    sharded = export_family(ties(family32), family32, tmp_path / "sharded", shard_bytes=8_000)
    out = tmp_path / "sharded"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(p.name for p in out.glob("*.safetensors"))
    assert len(files) > 3 and set(index["weight_map"].values()) == set(files)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in whole.values())
    assert differing(whole, sharded) == []
    model = AutoModelForCausalLM.from_pretrained(out)
    assert torch.equal(model.state_dict()["lm_head.weight"], whole["lm_head.weight"])


def test_progress_counts_the_bytes_written_up_to_the_whole_model(family32, tmp_path):
    calls: list[tuple[int, int]] = []
    base = open_checkpoint(family32["base"])
    experts = {f"expert{i}": open_checkpoint(family32[f"expert{i}"]) for i in range(N_EXPERTS)}
    export_merge(ties(family32), base, experts, tmp_path / "out", progress=lambda done, total: calls.append((done, total)))
    merged = load_dir(tmp_path / "out")
    total = sum(t.numel() * t.element_size() for t in merged.values())
    assert len(calls) == len(merged)  # once per tensor
    assert {t for _, t in calls} == {total}
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == total and done[0] > 0


def test_config_tokenizer_and_recipe_travel_with_the_weights(family32, tmp_path):
    out = tmp_path / "out"
    recipe = ties(family32, out_dtype="bfloat16")
    export_family(recipe, family32, out)
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["num_hidden_layers"] == 4
    assert AutoTokenizer.from_pretrained(out)("the sky is blue")["input_ids"]
    assert MergeRecipe.from_dict(json.loads((out / "evomerge_recipe.json").read_text())).digest() == recipe.digest()
    assert {t.dtype for t in load_dir(out).values()} == {torch.bfloat16}


def test_sharded_inputs_merge_like_single_files(tmp_path):
    single = build_family(tmp_path / "single", n_experts=N_EXPERTS, layers=2, seed=8)
    sharded = build_family(tmp_path / "sharded", n_experts=N_EXPERTS, layers=2, seed=8, shard_bytes=20_000)
    assert (sharded["base"] / "model.safetensors.index.json").exists()
    a = export_family(ties(single), single, tmp_path / "a")
    b = export_family(ties(sharded), sharded, tmp_path / "b")
    assert differing(a, b) == []


def test_open_recipe_inputs_resolves_uris(family32, tmp_path):
    recipe = ties(family32)
    base, experts = open_recipe_inputs(recipe)
    export_merge(recipe, base, experts, tmp_path / "out")
    assert differing(load_dir(tmp_path / "out"), export_family(recipe, family32, tmp_path / "ref")) == []


def _copy_family(family, tmp_path):
    copied = {name: tmp_path / name for name in family}
    for name, path in family.items():
        shutil.copytree(path, copied[name])
    return copied


def test_a_shape_mismatch_is_named_before_anything_is_written(family32, tmp_path):
    family = _copy_family(family32, tmp_path / "fam")
    file = family["expert1"] / "model.safetensors"
    tensors = load_file(str(file))
    tensors["model.layers.1.mlp.up_proj.weight"] = torch.zeros(5, 32)
    save_file(tensors, str(file))
    with pytest.raises(CheckpointError, match=r"expert 'expert1': tensor model\.layers\.1\.mlp\.up_proj\.weight has shape \[5, 32\]"):
        export_family(ties(family), family, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_dtype_mismatch_is_named_and_merge_dtype_resolves_it(family32, tmp_path):
    family = _copy_family(family32, tmp_path / "fam")
    file = family["expert0"] / "model.safetensors"
    save_file({n: t.to(torch.bfloat16) for n, t in load_file(str(file)).items()}, str(file))
    with pytest.raises(CheckpointError, match="expert 'expert0': tensor .* is torch.bfloat16, base has torch.float32 .* merge.dtype"):
        export_family(ties(family), family, tmp_path / "out")
    merged = export_family(ties(family, dtype="float32"), family, tmp_path / "ok")
    assert {t.dtype for t in merged.values()} == {torch.float32}


def test_architecture_mismatch_is_named(family32, tmp_path):
    family = _copy_family(family32, tmp_path / "fam")
    config = json.loads((family["expert2"] / "config.json").read_text())
    config["num_hidden_layers"] = 7
    (family["expert2"] / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="expert 'expert2': config num_hidden_layers is 7, base has 4"):
        export_family(ties(family), family, tmp_path / "out")


def test_missing_parameters_and_checkpoints_are_named(family32, tmp_path):
    recipe = ties(family32)
    base = open_checkpoint(family32["base"])
    with pytest.raises(RecipeError, match="expert 'expert1' has no checkpoint"):
        export_merge(recipe, base, {"expert0": open_checkpoint(family32["expert0"])}, tmp_path / "out")
    broken = MergeRecipe("ties", recipe.base_uri, (ExpertWeights("expert0", "x", {"weight": {"all": 1.0}, "density": {"embed": 0.5}}),),
                         groups=("embed", "blocks0", "head"))
    with pytest.raises(RecipeError, match="expert 'expert0': no density for layer group 'blocks0'"):
        export_merge(broken, base, {"expert0": open_checkpoint(family32["expert0"])}, tmp_path / "out")


def test_pickle_is_refused_unless_allowed_and_then_merges_the_same(family32, tmp_path):
    family = _copy_family(family32, tmp_path / "fam")
    for name in ("expert1",):
        file = family[name] / "model.safetensors"
        torch.save(load_file(str(file)), family[name] / "pytorch_model.bin")
        file.unlink()
    with pytest.raises(CheckpointError, match="pickle can run code when loaded .* allowPickle"):
        open_checkpoint(family["expert1"])
    base = open_checkpoint(family["base"])
    experts = {f"expert{i}": open_checkpoint(family[f"expert{i}"], allow_pickle=True) for i in range(N_EXPERTS)}
    export_merge(ties(family), base, experts, tmp_path / "out")
    assert differing(load_dir(tmp_path / "out"), export_family(ties(family32), family32, tmp_path / "ref")) == []


def test_scratch_buffers_are_reused_but_never_while_the_writer_still_needs_one():
    buffers = _ExportMemory()
    first, second = buffers.scratch(1000, torch.float32), buffers.scratch(1000, torch.float32)
    assert first.shape == (1000,) and first.dtype == torch.float32
    busy = buffers.settle(first)  # the merge wrote its result into `first`: busy until written
    assert [b.untyped_storage().data_ptr() for b in busy] == [first.untyped_storage().data_ptr()]
    third = buffers.scratch(500, torch.bfloat16)
    assert third.untyped_storage().data_ptr() == second.untyped_storage().data_ptr()  # the free one, reused
    fourth = buffers.scratch(1000, torch.float32)
    assert fourth.untyped_storage().data_ptr() not in (first.untyped_storage().data_ptr(), third.untyped_storage().data_ptr())
    buffers.settle(torch.zeros(1))
    buffers.written(busy)
    pointers = {buffers.scratch(1000, torch.float32).untyped_storage().data_ptr() for _ in range(3)}
    assert pointers == {t.untyped_storage().data_ptr() for t in (first, third, fourth)}
    buffers.close()


def _mapped_rss_kb(path) -> int:
    """Resident KiB of this process's mappings of `path` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.fixture
def padded_file(tmp_path):
    """A 1 MiB tensor between two small ones, so it covers whole pages of its own."""
    tensors = {"a": torch.arange(5, dtype=torch.float32), "big": torch.randn(512, 512),
               "z": torch.ones(3, dtype=torch.bfloat16)}
    (tmp_path / "m").mkdir()
    save_file(tensors, str(tmp_path / "m" / "model.safetensors"))
    (tmp_path / "m" / "config.json").write_text("{}")
    return open_checkpoint(tmp_path / "m"), tensors


def test_mapped_reads_are_the_tensors_and_their_pages_go_after_the_merge(padded_file):
    source, tensors = padded_file
    file = source.infos["big"].file
    buffers = _ExportMemory()
    mapped = {name: buffers.map(source, name) for name in tensors}
    assert all(torch.equal(mapped[n], t) and mapped[n].dtype == t.dtype for n, t in tensors.items())
    assert _mapped_rss_kb(file) >= 1024  # the tensor is mapped in, not copied
    assert buffers.settle(torch.zeros(1)) == []
    assert _mapped_rss_kb(file) <= 3 * 4  # only pages shared with a neighbour (and the header) stay
    assert torch.equal(mapped["big"], tensors["big"])  # a released view still reads the file
    buffers.close()


def test_an_input_released_during_the_merge_gives_its_pages_back_at_once(padded_file):
    """DARE's export releases each expert after its rescale pass, so one mapped expert is resident at a time."""
    source, tensors = padded_file
    file = source.infos["big"].file
    buffers = _ExportMemory()
    view = buffers.map(source, "big")
    buffers.release(buffers.scratch(10, torch.float32))  # not an input: nothing to give back
    assert _mapped_rss_kb(file) >= 1024
    buffers.release(view)
    assert _mapped_rss_kb(file) <= 3 * 4
    assert buffers.settle(torch.zeros(1)) == []  # released already: nothing left busy
    assert torch.equal(view, tensors["big"])
    del view
    buffers.close()


def test_a_write_into_a_mapped_input_never_reaches_the_file(padded_file):
    source, tensors = padded_file
    buffers = _ExportMemory()
    view = buffers.map(source, "big")
    view.fill_(7.0)
    assert torch.equal(source.read("big"), tensors["big"])
    del view
    buffers.settle(torch.zeros(1))
    buffers.close()


def test_a_mapped_input_that_is_the_result_stays_until_written(padded_file):
    source, tensors = padded_file
    file = source.infos["big"].file
    buffers = _ExportMemory()
    view = buffers.map(source, "big")
    busy = buffers.settle(view)
    assert len(busy) == 1 and _mapped_rss_kb(file) >= 1024
    buffers.written(busy)
    assert _mapped_rss_kb(file) <= 3 * 4
    del view
    buffers.close()


@pytest.mark.parametrize("method", ["linear", "ties"])
def test_exporting_over_a_previous_export_replaces_it(family32, tmp_path, method):
    """The writer deletes the old shard before writing its own: the new one must be complete and alone."""
    recipe = ties(family32) if method == "ties" else MergeRecipe("linear", None, tuple(
        ExpertWeights(f"expert{i}", str(family32[f"expert{i}"]), {"weight": {"all": 0.3 + 0.2 * i}})
        for i in range(N_EXPERTS)
    ))
    fresh = export_family(recipe, family32, tmp_path / "fresh")
    other = MergeRecipe("linear", None, tuple(
        ExpertWeights(f"expert{i}", str(family32[f"expert{i}"]), {"weight": {"all": 1.0}}) for i in range(N_EXPERTS)
    ))
    export_family(other, family32, tmp_path / "out")
    again = export_family(recipe, family32, tmp_path / "out")
    assert differing(fresh, again) == []


def test_an_old_shard_that_cannot_be_removed_fails_the_export_by_name(family32, tmp_path):
    (tmp_path / "out" / "model.safetensors").mkdir(parents=True)
    (tmp_path / "out" / "model.safetensors" / "keep").write_text("x")
    with pytest.raises(OSError, match="model.safetensors"):
        export_family(ties(family32), family32, tmp_path / "out")


def test_mapping_works_where_the_kernel_cannot_populate_pages(padded_file, monkeypatch):
    """Kernels before 5.14 refuse MADV_POPULATE_READ (EINVAL): pages then fault in on first touch."""
    monkeypatch.setattr("evomerge.merge.export.MADV_POPULATE_READ", 0x7FFF)
    source, tensors = padded_file
    buffers = _ExportMemory()
    assert torch.equal(buffers.map(source, "big"), tensors["big"])
    buffers.settle(torch.zeros(1))
    buffers.close()
