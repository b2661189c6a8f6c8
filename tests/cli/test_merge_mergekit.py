"""`evomerge merge config.yml` takes a mergekit config as mergekit users write it and writes mergekit 0.1.5's tensors;
`--format` on `export` and `merge` round-trips; what evomerge cannot do is refused (exit 2) naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from tests.merge.conftest import differing, load_dir, run_mergekit  # noqa: F401 (a fixture: mergekit run in-process)
from tests.support.tiny_models import build_finetune_family

EXAMPLES = Path(__file__).parent / "mergekit_examples"
LAYERS = 4


def evomerge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evomerge.cli.main", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finetunes(tmp_path_factory) -> dict[str, Path]:
    return build_finetune_family(tmp_path_factory.mktemp("finetunes"), n_experts=3, layers=LAYERS, seed=7)


def example(name: str, models: dict[str, Path], tmp_path: Path, **changes) -> Path:
    """mergekit's example config with its Hugging Face names replaced by local checkpoints (in order of appearance)."""
    text = (EXAMPLES / name).read_text()
    config = yaml.safe_load(text)
    names = [m["model"] for m in config["models"]] + ([config["base_model"]] if "base_model" in config else [])
    for hub_name, path in zip(names, models.values()):
        text = text.replace(hub_name, str(path))
    config = yaml.safe_load(text)
    config.update(changes)
    out = tmp_path / name
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def mergekit_family(finetunes) -> dict[str, Path]:
    """The example's three models are the experts, its base_model the base."""
    return {"expert0": finetunes["expert0"], "expert1": finetunes["expert1"], "expert2": finetunes["expert2"], "base": finetunes["base"]}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mergekits_ties_example_merges_to_mergekits_tensors(dtype, finetunes, run_mergekit, tmp_path):
    """examples/ties.yml: density and weight gradients over layers, a filtered weight, normalize — as written
    (float16), and in the checkpoints' bfloat16, where task vectors tie at the density cut in large groups."""
    config = example("ties.yml", mergekit_family(finetunes), tmp_path, dtype=dtype)
    result = evomerge("merge", str(config), "--out", str(tmp_path / "ours"))
    assert result.returncode == 0, result.stdout + result.stderr
    ours = load_dir(tmp_path / "ours")
    theirs = run_mergekit(yaml.safe_load(config.read_text()), tmp_path / "mergekit")
    assert sorted(ours) == sorted(theirs)
    assert differing(ours, theirs) == []


def test_the_ties_example_would_differ_with_evomerges_fast_tie_order(finetunes, run_mergekit, tmp_path):
    """The fixture has the tie structure that matters: cutting ties by index instead of torch's order changes bytes."""
    config = example("ties.yml", mergekit_family(finetunes), tmp_path, dtype="bfloat16")
    from evomerge.merge.mergekit_config import read_mergekit_file

    recipe = read_mergekit_file(config)
    recipe_file = tmp_path / "index.json"
    recipe_file.write_text(json.dumps({**recipe.to_dict(), "options": {**recipe.options, "tie_order": "index"}}))
    assert evomerge("merge", str(recipe_file), "--out", str(tmp_path / "index")).returncode == 0
    assert differing(load_dir(tmp_path / "index"), run_mergekit(yaml.safe_load(config.read_text()), tmp_path / "mk")) != []


def test_mergekits_linear_example_merges_to_mergekits_tensors(finetunes, run_mergekit, tmp_path):
    config = example("linear.yml", {k: finetunes[k] for k in ("expert0", "expert1", "expert2")}, tmp_path)
    result = evomerge("merge", str(config), "--format", "mergekit", "--out", str(tmp_path / "ours"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert differing(load_dir(tmp_path / "ours"), run_mergekit(yaml.safe_load(config.read_text()), tmp_path / "mk")) == []


def test_export_formats_round_trip_through_merge(finetunes, run_mergekit, tmp_path):
    """A recipe exported as a mergekit config merges (through evomerge and mergekit alike) to the same tensors,
    and exported as a recipe JSON to the same tensors as the recipe itself."""
    groups = ("embed", "blocks0.attn", "blocks0.mlp", "blocks1.attn", "blocks1.mlp", "head")
    recipe = MergeRecipe("ties", str(finetunes["base"]), tuple(
        ExpertWeights(f"expert{i}", str(finetunes[f"expert{i}"]), {
            "weight": {g: 0.4 + 0.1 * i + 0.05 * j for j, g in enumerate(groups)},
            "density": {g: 0.3 + 0.2 * i + 0.02 * j for j, g in enumerate(groups)},
        }) for i in range(3)), groups, {"tie_order": "mergekit"})
    source = tmp_path / "recipe.json"
    source.write_text(json.dumps(recipe.to_dict()))
    for fmt, name in (("mergekit", "config.yml"), ("recipe", "again.json")):
        result = evomerge("export", str(source), "--format", fmt, "--out", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
    for name in ("recipe.json", "config.yml", "again.json"):
        result = evomerge("merge", str(tmp_path / name), "--out", str(tmp_path / f"out-{name}"))
        assert result.returncode == 0, result.stdout + result.stderr
    theirs = run_mergekit(yaml.safe_load((tmp_path / "config.yml").read_text()), tmp_path / "mk")
    for name in ("recipe.json", "config.yml", "again.json"):
        assert differing(load_dir(tmp_path / f"out-{name}"), theirs) == [], name


@pytest.mark.parametrize(("change", "message"), [
    ({"merge_method": "della"}, "merge_method 'della'"),
    ({"modules": {"text": {}}}, "modules:"),
    ({"tokenizer_source": "union"}, "tokenizer source 'union'"),
    ({"parameters": {"normalize": True, "epsilon": 0.1}}, "parameters: epsilon"),
])
def test_what_evomerge_cannot_merge_is_refused_naming_the_field(change, message, finetunes, tmp_path):
    config = example("ties.yml", mergekit_family(finetunes), tmp_path, **change)
    result = evomerge("merge", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("models: [\n", "not YAML"),
    ("models: []\n", "not a mergekit config (no merge_method)"),
    ("merge_method: ties\nbase_model: /nowhere\nslices:\n  - sources:\n      - model: /nowhere\n", "malformed mergekit config"),
])
def test_a_broken_config_file_fails_naming_it(text, message, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(text)
    result = evomerge("merge", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
