"""The evaluation pod's command on tiny models: `evomerge evaluate-batch` as the pod runs it, reporting through
the termination log its Job is read from — after every candidate, so a pod that dies mid-batch still tells."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from evomerge.cli.cluster import register
from evomerge.evaluate import worker
from evomerge.evaluate.scores_message import decode_progress, decode_scores
from tests.k8s.test_worker_main import KEYS, recipe, spec_file  # noqa: F401 - spec_file is a fixture


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


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



def test_the_termination_log_holds_every_finished_candidate_while_the_batch_runs(spec_file, tiny_family, tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("EVOMERGE_TERMINATION_LOG", str(log))
    recipes = tmp_path / "recipes.json"
    ids = ["c1", "c2", "c3"]
    recipes.write_text(json.dumps([{"id": cid, "recipe": recipe(tiny_family, w, 1 - w)} for cid, w in zip(ids, (0.2, 0.5, 0.8))]))
    written: list[str] = []
    real_report = worker.report
    monkeypatch.setattr(worker, "report", lambda message, echo=True: (written.append(message), real_report(message, echo)))

    final = worker.evaluate_batch(spec_file, recipes, None, None, held_out=False)

    progress = [decode_progress(message, ids, KEYS) for message in written]
    assert [len(p) for p in progress] == [1, 2, 3]  # what a kubelet would keep if the pod died after each candidate
    assert progress[0][0] == progress[2][0] and progress[2] == decode_scores(final, ids, KEYS)
    assert all(scores is not None for scores, _ in progress[2])
