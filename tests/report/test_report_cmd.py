"""`evomerge report` and `evomerge export` on a real run directory (in process: the commands are cheap)."""

from __future__ import annotations

import json

import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from evomerge.cli.main import app
from tests.report import runs
from tests.report.chromium import check_page
from tests.merge.test_mergekit_config import run_mergekit


def evomerge(*args: str):
    return CliRunner().invoke(app, list(args))


def test_evomerge_run_writes_the_report_and_it_opens_cleanly(finished_run):
    report = finished_run[0] / "report" / "report.html"
    assert report.exists() and (finished_run[0] / "report" / "report.md").exists()
    page = check_page(report)
    assert page.console_errors == [] and page.broken_images == [] and len(page.images) == 2  # progress, coefficients


def test_report_command_renders_into_the_chosen_directory(finished_run, tmp_path):
    result = evomerge("report", str(finished_run[0]), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    assert "report written to" in result.stderr
    html = (tmp_path / "out" / "report.html").read_text()
    assert "evomerge report: run" in html and finished_run[1]["best"]["candidate"] in html


def test_report_command_on_a_directory_that_is_not_a_run_fails_with_exit_2(tmp_path):
    result = evomerge("report", str(tmp_path))
    assert result.exit_code == 2 and "no spec.json" in result.stderr


def test_export_mergekit_prints_a_config_that_rebuilds_the_merge(finished_run, tmp_path):
    run_dir = finished_run[0]
    result = evomerge("export", "--format", "mergekit", str(run_dir))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (run_dir / "merged" / "mergekit_config.yml").read_text()
    theirs = run_mergekit(yaml.safe_load(result.stdout), tmp_path / "mergekit")
    ours = load_file(run_dir / "merged" / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_export_writes_files_and_the_recipe_format(finished_run, tmp_path):
    run_dir, summary = finished_run
    out = tmp_path / "recipe.json"
    result = evomerge("export", "-f", "recipe", str(run_dir), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert json.loads(out.read_text()) == summary["best"]["recipe"]
    from_recipe = evomerge("export", str(run_dir / "merged" / "evomerge_recipe.json"), "--num-layers", "4")
    assert from_recipe.exit_code == 0 and yaml.safe_load(from_recipe.stdout)["merge_method"] == "ties"


def test_export_refuses_unfinished_runs_and_unknown_formats(tmp_path, finished_run):
    unfinished = runs.write_run(tmp_path / "run", finished=False)
    result = evomerge("export", str(unfinished))
    assert result.exit_code == 2 and f"evomerge run --resume {unfinished}" in result.stderr
    bad = evomerge("export", "--format", "gguf", str(finished_run[0]))
    assert bad.exit_code == 2 and "--format must be one of mergekit, recipe" in bad.stderr


def test_help_lists_the_new_commands():
    for command in (["report"], ["export"]):
        result = evomerge(*command, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout
