"""The pod commands on tiny models: `evomerge evaluate-batch` and `evomerge export-model` as the pods run them,
reporting through the termination log their Jobs are read from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from evomerge.cli.cluster import register
from evomerge.executors.kubernetes import decode_scores
from evomerge.k8s.messages import decode_export
from evomerge.k8s.render_search import spec_document
from evomerge.k8s.worker_main import LINEAGE_FILE, content_hash
from evomerge.spec.merge_search import MergeSearchSpec

KEYS = ["tiny_colors/acc"]


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture
def spec_file(tmp_path, tiny_family, tiny_tasks) -> Path:
    spec = MergeSearchSpec.model_validate({
        "baseModel": {"uri": f"file://{tiny_family['base']}"},
        "experts": [{"name": "e0", "uri": f"file://{tiny_family['expert0']}"}, {"name": "e1", "uri": str(tiny_family["expert1"])}],
        "objectives": [{"task": "tiny_colors", "limit": 4}],
        "heldOut": [{"task": "tiny_colors", "limit": 4}],
        "evaluation": {"includePaths": [str(tiny_tasks)], "device": "cpu"},
    })
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec_document("tiny", spec)))
    return path


def recipe(family: dict[str, Path], w0: float, w1: float) -> dict:
    return {"method": "task_arithmetic", "baseUri": f"file://{family['base']}", "groups": ["all"], "options": {},
            "experts": [{"name": "e0", "uri": f"file://{family['expert0']}", "params": {"weight": {"all": w0}}},
                        {"name": "e1", "uri": str(family["expert1"]), "params": {"weight": {"all": w1}}}]}


def test_evaluate_batch_scores_each_candidate_into_the_termination_log(cli, spec_file, tiny_family, tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("EVOMERGE_TERMINATION_LOG", str(log))
    recipes = tmp_path / "recipes.json"
    broken = {"method": "task_arithmetic", "baseUri": None}  # no experts: this one candidate cannot be merged
    recipes.write_text(json.dumps([{"id": "c1", "recipe": recipe(tiny_family, 0.5, 0.5)}, {"id": "c2", "recipe": broken}]))

    result = CliRunner().invoke(cli, ["evaluate-batch", "--spec", str(spec_file), "--recipes", str(recipes)])

    assert result.exit_code == 0, result.output
    message = log.read_text()
    assert len(message.encode()) <= 4096
    (good, bad) = decode_scores(message, ["c1", "c2"], KEYS)
    assert good[1] is None and 0.0 <= good[0]["tiny_colors/acc"] <= 1.0
    assert bad[0] is None and "recipes[1]" in bad[1]


def test_evaluate_batch_exits_3_on_inputs_no_retry_can_fix(cli, tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("EVOMERGE_TERMINATION_LOG", str(log))
    (tmp_path / "spec.json").write_text(json.dumps({"kind": "MergeSearch", "metadata": {"name": "x"}, "spec": {"objectives": []}}))

    result = CliRunner().invoke(cli, ["evaluate-batch", "--spec", str(tmp_path / "spec.json"), "--recipes", str(tmp_path / "r.json")])

    assert result.exit_code == 3
    assert log.read_text().startswith("InputError:") and "objectives" in log.read_text()


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
    assert content_hash(tiny_family["expert0"]) != content_hash(tiny_family["expert1"])


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
