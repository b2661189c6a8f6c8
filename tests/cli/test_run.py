"""`evomerge run` end to end on tiny models: spec → candidates → merge → lm-eval score → best merge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from evomerge.merge.export import export_merge
from evomerge.merge.recipe import MergeRecipe
from evomerge.models.checkpoint import open_checkpoint


def write_spec(path: Path, family: dict[str, Path], tasks: Path, **search) -> Path:
    spec = {
        "apiVersion": "evomerge.dev/v1alpha1",
        "kind": "MergeSearch",
        "metadata": {"name": "tiny"},
        "spec": {
            "baseModel": {"uri": str(family["base"])},
            "experts": [{"name": "e0", "uri": str(family["expert0"])}, {"name": "e1", "uri": f"file://{family['expert1']}"}],
            "merge": {"method": "task_arithmetic", "granularity": "layerGroups", "layerGroups": 2},
            "search": {"algorithm": "random", "populationSize": 3, "maxGenerations": 2, "seed": 7, **search},
            "objectives": [{"task": "tiny_colors", "metric": "acc"}],
            "heldOut": [{"task": "tiny_colors", "metric": "acc"}],
            "evaluation": {"includePaths": [str(tasks)], "device": "cpu"},
        },
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def evomerge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evomerge.cli.main", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_family, tiny_tasks):
    root = tmp_path_factory.mktemp("run")
    spec = write_spec(root / "spec.yaml", tiny_family, tiny_tasks)
    result = evomerge("run", str(spec), "--run-dir", str(root / "run"), "--json")
    return spec, root / "run", result


def test_run_finds_a_best_merge_and_writes_it(finished_run, tiny_family):
    _, run_dir, result = finished_run
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["evaluations"] == 6 and summary["failedEvaluations"] == 0
    assert summary["stopReason"] == "maxGenerations reached"
    assert 0.0 <= summary["best"]["fitness"] <= 1.0
    assert set(summary["heldOut"]) == {"tiny_colors/acc"}
    merged = Path(summary["mergedModel"])
    recipe = MergeRecipe.from_dict(summary["best"]["recipe"])
    assert set(recipe.groups) == {"embed", "blocks0", "blocks1", "head"}
    reexport = export_merge(
        recipe,
        open_checkpoint(tiny_family["base"]),
        {"e0": open_checkpoint(tiny_family["expert0"]), "e1": open_checkpoint(tiny_family["expert1"])},
        run_dir.parent / "reexport",
    )
    ours, again = load_file(merged / "model.safetensors"), load_file(reexport / "model.safetensors")
    assert ours.keys() == again.keys() and all(torch.equal(ours[k], again[k]) for k in ours)
    assert (merged / "tokenizer.json").exists() and (merged / "config.json").exists()


def test_the_report_compares_the_evolved_merge_with_each_expert_and_the_uniform_merge(finished_run):
    _, run_dir, result = finished_run
    rows = {r["name"]: r for r in json.loads((run_dir / "comparison.json").read_text())}
    assert set(rows) == {"expert e0", "expert e1", "uniform merge", "evolved merge"}
    summary = json.loads(result.stdout)
    assert rows["evolved merge"]["search"] == pytest.approx({k: float(v) for k, v in summary["best"]["scores"].items()})
    assert rows["evolved merge"]["heldOut"] == pytest.approx({k: float(v) for k, v in summary["heldOut"].items()})
    html = (run_dir / "report" / "report.html").read_text()
    assert "uniform merge" in html and "expert e1" in html


def test_history_records_every_step(finished_run):
    _, run_dir, _ = finished_run
    events = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds.count("ask") == 2 and kinds.count("tell") == 2 and kinds.count("generation") == 2
    assert kinds.count("result") == 6


def test_rerun_on_a_finished_directory_replays_without_evaluating(finished_run):
    spec, run_dir, first = finished_run
    before = (run_dir / "history.jsonl").read_text()
    again = evomerge("run", str(spec), "--run-dir", str(run_dir), "--json", "--no-export")
    assert again.returncode == 0, again.stderr
    assert (run_dir / "history.jsonl").read_text() == before
    assert json.loads(again.stdout)["best"] == json.loads(first.stdout)["best"]


def test_changed_spec_on_an_existing_run_directory_is_refused(finished_run, tmp_path, tiny_family, tiny_tasks):
    _, run_dir, _ = finished_run
    other = write_spec(tmp_path / "other.yaml", tiny_family, tiny_tasks, seed=8)
    result = evomerge("run", str(other), "--run-dir", str(run_dir))
    assert result.returncode == 2
    assert "different spec" in result.stderr


def test_invalid_spec_exits_2_with_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"kind": "MergeSearch", "metadata": {"name": "x"},
                                   "spec": {"objectives": [{"task": "t"}], "search": {"populationSize": 0}}}))
    result = evomerge("run", str(bad))
    assert result.returncode == 2
    assert "spec.search.populationSize" in result.stderr


def test_unreadable_expert_uri_names_the_field(tmp_path, tiny_family, tiny_tasks):
    spec = write_spec(tmp_path / "spec.yaml", tiny_family, tiny_tasks)
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["experts"][1]["uri"] = str(tmp_path / "nowhere")
    spec.write_text(yaml.safe_dump(doc))
    result = evomerge("run", str(spec), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "spec.experts[1].uri" in result.stderr and "nowhere" in result.stderr


def test_help_works_for_every_command():
    for command in ([], ["run"], ["crds"], ["merge"]):
        result = evomerge(*command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout


def test_merge_command_rebuilds_the_best_merge_from_the_summary(finished_run, tmp_path):
    _, run_dir, result = finished_run
    merged = Path(json.loads(result.stdout)["mergedModel"])
    rebuilt = evomerge("merge", str(run_dir / "summary.json"), "--out", str(tmp_path / "rebuilt"))
    assert rebuilt.returncode == 0, rebuilt.stderr
    ours, again = load_file(merged / "model.safetensors"), load_file(tmp_path / "rebuilt" / "model.safetensors")
    assert ours.keys() == again.keys() and all(torch.equal(ours[k], again[k]) for k in ours)


@pytest.mark.parametrize("change, field", [
    ({"evaluation": {"engine": "tgi"}}, "spec.evaluation.engine"),
    ({"merge": {"dataFlow": {"enabled": True, "modelA": {"uri": "s3://bucket/merged"}}}}, "spec.merge.dataFlow.modelA.uri"),
])
def test_settings_a_local_run_cannot_honour_are_refused_by_name(tmp_path, tiny_family, tiny_tasks, change, field):
    spec = write_spec(tmp_path / "spec.yaml", tiny_family, tiny_tasks)
    doc = yaml.safe_load(spec.read_text())
    for section, values in change.items():
        doc["spec"][section] = {**doc["spec"].get(section, {}), **values}
    spec.write_text(yaml.safe_dump(doc))
    result = evomerge("run", str(spec), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert field in result.stderr


def test_a_failed_search_exits_1_and_still_writes_its_report(tmp_path, tiny_family, tiny_tasks):
    spec = write_spec(tmp_path / "spec.yaml", tiny_family, tiny_tasks, populationSize=2, maxGenerations=1)
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["objectives"] = [{"task": "tiny_colors", "metric": "no_such_metric"}]  # every evaluation fails
    doc["spec"]["evaluation"]["maxFailedEvaluations"] = 1
    spec.write_text(yaml.safe_dump(doc))
    run_dir = tmp_path / "run"
    result = evomerge("run", str(spec), "--run-dir", str(run_dir))
    assert result.returncode == 1, result.stderr
    assert "search failed: 2 evaluations failed (evaluation.maxFailedEvaluations is 1)" in result.stderr
    assert "Traceback" not in result.stderr
    html = run_dir / "report" / "report.html"
    assert f"report: {html}" in result.stderr
    text = html.read_text()
    assert "reports no metric" in text and "no_such_metric" in text  # the failures, for the user to read
    assert "search failed: 2 evaluations failed" in text and "running or interrupted" not in text  # why it stopped
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopReason"].startswith("search failed") and summary["evaluations"] == 2 and summary["best"] is None
