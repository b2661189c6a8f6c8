"""The export pod's command on tiny models: `evomerge export-model` as the pod runs it, reporting through the
termination log its Job is read from (evaluate-batch: tests/evaluate/test_worker.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from evomerge.cli.cluster import register
from evomerge.evaluate.items import ITEMS_FILE
from evomerge.k8s.messages import decode_export
from evomerge.k8s.render_search import spec_document
from evomerge.k8s.worker_main import LINEAGE_FILE, content_hash
from evomerge.merge.export import RECIPE_FILE
from evomerge.merge.recipe import MergeRecipe
from evomerge.spec.merge_search import MergeSearchSpec
from tests.support.tiny_models import build_lora_adapter

KEYS = ["tiny_colors/acc"]


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def write_spec(path: Path, family: dict[str, Path], tasks: Path, exporter: str = "evomerge", held_out: bool = True,
               experts: list[dict] | None = None) -> Path:
    spec = MergeSearchSpec.model_validate({
        "baseModel": {"uri": f"file://{family['base']}", "revision": "base-rev"},
        "experts": experts or [{"name": "e0", "uri": f"file://{family['expert0']}"}, {"name": "e1", "uri": str(family["expert1"])}],
        "objectives": [{"task": "tiny_colors", "limit": 4}],
        "heldOut": [{"task": "tiny_colors", "limit": 4}] if held_out else [],
        "search": {"algorithm": "cmaes", "seed": 7, "populationSize": 4, "maxGenerations": 3},
        "evaluation": {"includePaths": [str(tasks)], "device": "cpu"},
        "storage": {"output": {"uri": "file:///merged/tiny", "exporter": exporter}},
    })
    path.write_text(json.dumps(spec_document("tiny", spec)))
    return path


@pytest.fixture
def spec_file(tmp_path, tiny_family, tiny_tasks) -> Path:
    return write_spec(tmp_path / "spec.json", tiny_family, tiny_tasks)


def recipe(family: dict[str, Path], w0: float, w1: float) -> dict:
    return {"method": "task_arithmetic", "baseUri": f"file://{family['base']}", "groups": ["all"], "options": {},
            "experts": [{"name": "e0", "uri": f"file://{family['expert0']}", "params": {"weight": {"all": w0}}},
                        {"name": "e1", "uri": str(family["expert1"]), "params": {"weight": {"all": w1}}}]}


def test_export_model_writes_the_checkpoint_its_lineage_and_held_out_scores(cli, spec_file, tiny_family, tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("EVOMERGE_TERMINATION_LOG", str(log))
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(recipe(tiny_family, 0.3, 0.6)))
    out = tmp_path / "out" / "v1"

    result = CliRunner().invoke(cli, ["export-model", "--recipe", str(recipe_file), "--spec", str(spec_file), "--out", str(out)])

    assert result.exit_code == 0, result.output
    report = decode_export(log.read_text())
    assert report.error is None and set(report.held_out) == {"tiny_colors/acc"}
    expected = {"base": content_hash(tiny_family["base"]), "e0": content_hash(tiny_family["expert0"]),
                "e1": content_hash(tiny_family["expert1"])}
    assert report.hashes == expected
    assert json.loads((out / LINEAGE_FILE).read_text()) == {"sha256": expected}
    assert (out / "config.json").exists() and list(out.glob("*.safetensors"))
    assert report.output == content_hash(out)  # the checkpoint as read back where it was written
    assert content_hash(tiny_family["expert0"]) != content_hash(tiny_family["expert1"])


def merged_model(family: dict[str, Path], recipe_dict: dict) -> dict:
    """The MergedModel the operator would have published for the recipe (its render_export_configmap's model.json)."""
    return {"apiVersion": "evomerge.dev/v1alpha1", "kind": "MergedModel", "metadata": {"name": "tiny"},
            "spec": {"search": "tiny", "version": 3, "recipe": recipe_dict, "outputUri": "file:///merged/tiny/v3",
                     "scores": {"search": {"tiny_colors/acc": "0.625"}},
                     "lineage": [{"name": "base", "uri": f"file://{family['base']}", "revision": "base-rev"},
                                 {"name": "e0", "uri": f"file://{family['expert0']}", "revision": "e0-rev"},
                                 {"name": "e1", "uri": str(family["expert1"]), "revision": "e1-rev"}]}}


def run_export(cli, tmp_path: Path, spec: Path, recipe_dict: dict, out: Path, *extra: str):
    (tmp_path / "recipe.json").write_text(json.dumps(recipe_dict))
    return CliRunner().invoke(cli, ["export-model", "--recipe", str(tmp_path / "recipe.json"), "--spec", str(spec),
                                    "--out", str(out), *extra])


def test_the_export_writes_a_model_card_with_lineage_scores_search_and_a_mergekit_config(cli, spec_file, tiny_family, tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("EVOMERGE_TERMINATION_LOG", str(log))
    recipe_dict = recipe(tiny_family, 0.3, 0.6)
    (tmp_path / "model.json").write_text(json.dumps(merged_model(tiny_family, recipe_dict)))
    out = tmp_path / "out" / "v3"

    result = run_export(cli, tmp_path, spec_file, recipe_dict, out, "--model", str(tmp_path / "model.json"))

    assert result.exit_code == 0, result.output
    held_out = decode_export(log.read_text()).held_out["tiny_colors/acc"]
    card = (out / "README.md").read_text()
    assert "# tiny v3" in card and "A **task_arithmetic** merge of 2 expert(s)" in card
    assert f"| base | base | `file://{tiny_family['base']}` | base-rev | `{content_hash(tiny_family['base'])}` |" in card
    assert f"| expert | e0 | `file://{tiny_family['expert0']}` | e0-rev | `{content_hash(tiny_family['expert0'])}` |" in card
    assert f"| expert | e1 | `{tiny_family['expert1']}` | e1-rev | `{content_hash(tiny_family['expert1'])}` |" in card
    assert "| search | tiny_colors | acc ↑ | 4 | 1 | 0.625 |" in card
    assert f"| held-out | tiny_colors | acc ↑ | 4 | 1 | {round(held_out, 4):g} |" in card
    assert "| e0 | weight | 0.3 |" in card and "| e1 | weight | 0.6 |" in card
    assert "- **optimizer**: cmaes (generational)" in card and "- **seed**: 7" in card
    assert "population 4, 3 generations × 1 round(s)" in card and "- **exported with**: evomerge" in card
    config = yaml.safe_load((out / "mergekit_config.yml").read_text())
    assert config["merge_method"] == "task_arithmetic" and config["base_model"] == str(tiny_family["base"])
    assert [m["parameters"]["weight"] for m in config["models"]] == [0.3, 0.6]


def tensors(directory: Path) -> dict[str, torch.Tensor]:
    return {name: t for file in sorted(directory.glob("*.safetensors")) for name, t in load_file(file).items()}


def test_the_mergekit_exporter_writes_the_checkpoint_evomerges_exporter_writes(cli, tiny_family, tiny_tasks, tmp_path, monkeypatch):
    monkeypatch.setenv("EVOMERGE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    layered = recipe(tiny_family, 0.3, 0.6)
    layered["groups"] = ["embed", "blocks0", "blocks1", "head"]
    for expert, values in zip(layered["experts"], ([0.2, 0.5, 0.9, 0.4], [0.7, 0.1, 0.3, 1.1])):
        expert["params"]["weight"] = dict(zip(layered["groups"], values))
    spec = write_spec(tmp_path / "spec.json", tiny_family, tiny_tasks, exporter="mergekit", held_out=False)

    ours = run_export(cli, tmp_path, spec, layered, tmp_path / "evomerge", "--exporter", "evomerge")
    theirs = run_export(cli, tmp_path, spec, layered, tmp_path / "mergekit", "--exporter", "mergekit")

    assert ours.exit_code == 0 and theirs.exit_code == 0, theirs.output
    evomerge_tensors, mergekit_tensors = tensors(tmp_path / "evomerge"), tensors(tmp_path / "mergekit")
    assert evomerge_tensors.keys() == mergekit_tensors.keys()
    assert [k for k in evomerge_tensors if not torch.equal(evomerge_tensors[k], mergekit_tensors[k])] == []
    assert not torch.equal(evomerge_tensors["model.embed_tokens.weight"], load_file(tiny_family["base"] / "model.safetensors")["model.embed_tokens.weight"])
    card = (tmp_path / "mergekit" / "README.md").read_text()
    assert "- **exported with**: mergekit-yaml" in card and "evomerge_lineage.json" in card
    assert len(yaml.safe_load((tmp_path / "mergekit" / "mergekit_config.yml").read_text())["slices"]) == 2
    assert MergeRecipe.from_dict(json.loads((tmp_path / "mergekit" / RECIPE_FILE).read_text())).to_dict() == MergeRecipe.from_dict(layered).to_dict()


def test_the_mergekit_exporter_refuses_a_lora_expert_naming_the_field(cli, tiny_family, tiny_tasks, tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("EVOMERGE_TERMINATION_LOG", str(log))
    adapter = build_lora_adapter(tiny_family["base"], tmp_path / "adapter")
    spec = write_spec(tmp_path / "spec.json", tiny_family, tiny_tasks, held_out=False)  # an Expert resource may be LoRA
    with_lora = recipe(tiny_family, 0.3, 0.6)
    with_lora["experts"][1]["uri"] = str(adapter)

    result = run_export(cli, tmp_path, spec, with_lora, tmp_path / "out", "--exporter", "mergekit")

    assert result.exit_code == 2
    error = decode_export(log.read_text()).error
    assert "spec.storage.output.exporter" in error and "LoRA" in error and "e1" in error and "exporter: evomerge" in error
    assert not (tmp_path / "out").exists()


def test_export_model_reports_unusable_inputs_as_an_error_message(cli, spec_file, tiny_family, tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("EVOMERGE_TERMINATION_LOG", str(log))
    bad = recipe(tiny_family, 0.3, 0.6)
    bad["experts"][0]["uri"] = "s3://bucket/e0"
    (tmp_path / "recipe.json").write_text(json.dumps(bad))

    result = CliRunner().invoke(cli, ["export-model", "--recipe", str(tmp_path / "recipe.json"), "--spec", str(spec_file),
                                      "--out", str(tmp_path / "out")])

    assert result.exit_code == 2
    assert "s3://" in decode_export(log.read_text()).error


def test_the_export_compares_the_new_version_with_the_published_one_on_the_same_items(cli, spec_file, tiny_family, tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("EVOMERGE_TERMINATION_LOG", str(log))
    published, candidate = tmp_path / "out" / "v1", tmp_path / "out" / "v2"
    assert run_export(cli, tmp_path, spec_file, recipe(tiny_family, 0.3, 0.6), published).exit_code == 0
    first = decode_export(log.read_text())
    assert first.gate is None  # nothing published yet: nothing to compare with

    result = run_export(cli, tmp_path, spec_file, recipe(tiny_family, 0.3, 0.6), candidate, "--published", str(published))

    assert result.exit_code == 0, result.output
    report = decode_export(log.read_text())
    gate = report.gate
    # The same recipe again: not one item differs, so there is no gain to promote.
    assert gate is not None and not gate.promoted and gate.reason == "NotPromoted"
    assert gate.test.test == "mcnemar" and gate.test.items == 4 and gate.test.p_value == 1.0 and gate.test.discordant == (0, 0)
    assert gate.baseline == pytest.approx(first.held_out) and report.held_out == pytest.approx(first.held_out)
    assert gate.message.endswith("p = 1 ≥ 0.05; no gain")
    items = json.loads((candidate / ITEMS_FILE).read_text())
    assert set(items) == {"seed", "candidate", "published", "tests"} and items["seed"] == 7
    assert items["candidate"] == items["published"] and len(items["candidate"]["tiny_colors/acc"]["values"]) == 4
    assert items["tests"]["weighted"]["pValue"] == 1.0


def test_a_published_version_missing_from_storage_holds_the_new_one_back_with_the_reason(cli, spec_file, tiny_family, tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("EVOMERGE_TERMINATION_LOG", str(log))

    result = run_export(cli, tmp_path, spec_file, recipe(tiny_family, 0.3, 0.6), tmp_path / "v2", "--published", str(tmp_path / "gone"))

    assert result.exit_code == 0, result.output
    gate = decode_export(log.read_text()).gate
    assert not gate.promoted and "has no config.json, so the versions could not be compared" in gate.message
