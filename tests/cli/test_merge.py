"""`evomerge merge` writes a recipe's checkpoint (or, with --adapter, one PEFT adapter over the base), or says which
field or file stops it — never with a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from evomerge.cli.main import _parse_size
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from tests.support.tiny_models import build_lora_adapter

TOKENS = torch.tensor([[2, 10, 11, 9, 5]])


def evomerge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evomerge.cli.main", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def loras(tiny_family, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("loras")
    return {"l0": str(build_lora_adapter(tiny_family["base"], root / "l0", rank=4, seed=1, std=0.3)),
            "l1": str(build_lora_adapter(tiny_family["base"], root / "l1", rank=2, seed=2, std=0.3, targets=("q_proj", "up_proj")))}


def write_recipe(path, method: str, base: str, experts: dict[str, str], **options) -> str:
    recipe = MergeRecipe(method, base, tuple(ExpertWeights(n, u, {"weight": {"all": 0.8 - 0.3 * i}})
                                             for i, (n, u) in enumerate(experts.items())), options=options)
    path.write_text(json.dumps(recipe.to_dict()))
    return str(path)


def test_adapter_over_the_base_equals_the_merged_checkpoint(tiny_family, loras, tmp_path):
    recipe = write_recipe(tmp_path / "recipe.json", "task_arithmetic", str(tiny_family["base"]), loras, **{"lambda": 1.3})
    merged = evomerge("merge", recipe, "--out", str(tmp_path / "merged"))
    adapter = evomerge("merge", recipe, "--out", str(tmp_path / "adapter"), "--adapter")
    assert merged.returncode == 0 and adapter.returncode == 0, merged.stderr + adapter.stderr

    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= files and "config.json" not in files
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 6  # 4 + 2 on q_proj
    AutoTokenizer.from_pretrained(tmp_path / "adapter")  # a scorer reads the tokenizer from the adapter directory
    base = AutoModelForCausalLM.from_pretrained(tiny_family["base"], dtype=torch.float32)
    served = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    dense = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(served(TOKENS).logits, dense(TOKENS).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method, options, message", [
    ("ties", {}, "recipe method: ties is not low-rank"),
    ("linear", {"normalize": False}, "recipe options.normalize: linear without normalize"),
])
def test_a_recipe_that_is_not_one_adapter_fails_naming_the_field(method, options, message, tiny_family, loras, tmp_path):
    recipe = write_recipe(tmp_path / "recipe.json", method, str(tiny_family["base"]), loras, **options)
    result = evomerge("merge", recipe, "--out", str(tmp_path / "out"), "--adapter")
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_full_experts_cannot_be_an_adapter(tiny_family, tmp_path):
    experts = {"e0": str(tiny_family["expert0"]), "e1": str(tiny_family["expert1"])}
    recipe = write_recipe(tmp_path / "recipe.json", "task_arithmetic", str(tiny_family["base"]), experts)
    result = evomerge("merge", recipe, "--out", str(tmp_path / "out"), "--adapter")
    assert result.returncode == 2
    assert "recipe experts[0] 'e0'" in " ".join(result.stderr.split())


def test_merge_says_what_it_wrote(tiny_family, tmp_path):
    experts = {"e0": str(tiny_family["expert0"]), "e1": str(tiny_family["expert1"])}
    recipe = write_recipe(tmp_path / "recipe.json", "linear", None, experts)
    result = evomerge("merge", recipe, "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"merged model written to .*out \(\d+\.\d\d GB in \d+\.\d s\)", " ".join(result.stderr.split()))
    assert (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize("text, message", [
    ("{not json", "not JSON (Expecting property name"),
    (json.dumps({"experts": []}), "neither a run summary nor a recipe"),
    (json.dumps([1, 2]), "expected a JSON object"),
    (json.dumps({"method": "linear", "experts": [{"name": "e0"}]}), "field 'uri' is missing"),
    (json.dumps({"best": None}), "the run has no scored candidate"),
])
def test_a_broken_recipe_file_fails_naming_it(text, message, tmp_path):
    (tmp_path / "recipe.json").write_text(text)
    result = evomerge("merge", str(tmp_path / "recipe.json"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert f"{tmp_path / 'recipe.json'}: " in " ".join(result.stderr.split()) and message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_inputs_the_exporter_refuses_fail_with_its_message(tiny_family, tmp_path):
    """Checks that run inside the export (here: slerp takes one expert) end the command cleanly too."""
    experts = {"e0": str(tiny_family["expert0"]), "e1": str(tiny_family["expert1"])}
    recipe = write_recipe(tmp_path / "recipe.json", "slerp", str(tiny_family["base"]), experts)
    result = evomerge("merge", recipe, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "slerp interpolates between the base and one expert" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "model.safetensors").exists()


def test_an_output_that_cannot_be_written_fails_naming_it(tiny_family, tmp_path):
    (tmp_path / "taken").write_text("a file, not a directory")
    experts = {"e0": str(tiny_family["expert0"])}
    recipe = write_recipe(tmp_path / "recipe.json", "linear", None, experts)
    result = evomerge("merge", recipe, "--out", str(tmp_path / "taken" / "out"))
    assert result.returncode == 2
    assert f"could not merge into {tmp_path / 'taken' / 'out'}" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_shard_size_splits_the_checkpoint_and_it_still_loads(tiny_family, tmp_path):
    experts = {"e0": str(tiny_family["expert0"]), "e1": str(tiny_family["expert1"])}
    recipe = write_recipe(tmp_path / "recipe.json", "linear", None, experts)
    result = evomerge("merge", recipe, "--out", str(tmp_path / "out"), "--shard-size", "20KB")
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in (tmp_path / "out").glob("*.safetensors"))
    assert len(shards) > 2 and set(index["weight_map"].values()) == set(shards)
    assert all(p.stat().st_size <= 20_000 + 4096 for p in (tmp_path / "out").glob("*.safetensors"))  # + header
    AutoModelForCausalLM.from_pretrained(tmp_path / "out")


@pytest.mark.parametrize("text, size", [("5GB", 5 * 10**9), ("500MiB", 500 * 2**20), ("2e9", 2 * 10**9), ("1.5 gb", 1_500_000_000)])
def test_sizes_read_as_people_write_them(text, size):
    assert _parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "0", "5 parsecs", "-1GB"])
def test_a_bad_shard_size_fails_naming_the_option(text, tiny_family, tmp_path):
    recipe = write_recipe(tmp_path / "recipe.json", "linear", None, {"e0": str(tiny_family["expert0"])})
    result = evomerge("merge", recipe, "--out", str(tmp_path / "out"), "--shard-size", text)
    assert result.returncode == 2 and f"--shard-size {text!r}" in " ".join(result.stderr.split())
