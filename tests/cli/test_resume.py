"""Ctrl-C stops `evomerge run` cleanly, and `evomerge run --resume RUN_DIR` finishes the same search."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from evomerge.cli.main import app
from tests.cli.test_run import evomerge, write_spec

# The signal goes out once the first result is in the history, and must land before the search ends: a tiny
# evaluation takes tens of milliseconds, so 6 of them ended within a loaded machine's scheduling lag (a clean-clone
# run finished the search, its export and comparison before the signal came). 200 take seconds.
SEARCH = {"populationSize": 2, "maxGenerations": 100}
EVALUATIONS = 200


def events(run_dir: Path) -> list[dict]:
    """The history's complete lines: read while the run appends, the last line may still be half written."""
    path = run_dir / "history.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


def interrupt_after_first_result(spec: Path, run_dir: Path, signum: int = signal.SIGINT) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "evomerge.cli.main", "run", str(spec), "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 300
    while not any(e["type"] == "result" for e in events(run_dir)):
        assert process.poll() is None, f"the run ended before its first result: {process.communicate()}"
        assert time.monotonic() < deadline, "no evaluation finished within 300 s"
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_sigint_stops_cleanly_and_resume_completes_the_same_search(tmp_path, tiny_family, tiny_tasks):
    spec = write_spec(tmp_path / "spec.yaml", tiny_family, tiny_tasks, **SEARCH)
    run_dir = tmp_path / "interrupted"

    stopped = interrupt_after_first_result(spec, run_dir)
    assert stopped.returncode == 130, stopped.stderr
    assert f"interrupted — resume with: evomerge run --resume {run_dir}" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    done_before = [e["id"] for e in events(run_dir) if e["type"] == "result"]
    assert 1 <= len(done_before) < EVALUATIONS and not (run_dir / "summary.json").exists()
    report = run_dir / "report" / "report.html"
    assert f"report: {report}" in stopped.stderr
    assert "running or interrupted" in report.read_text()

    resumed = evomerge("run", "--resume", str(run_dir), "--no-export")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(done_before)} evaluations replayed from history" in resumed.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["evaluations"] == EVALUATIONS and summary["stopReason"] == "maxGenerations reached"
    results = [e["id"] for e in events(run_dir) if e["type"] == "result"]
    assert len(results) == len(set(results)) == EVALUATIONS  # nothing evaluated twice
    assert results[: len(done_before)] == done_before

    reference_dir = tmp_path / "uninterrupted"
    reference = evomerge("run", str(spec), "--run-dir", str(reference_dir), "--json", "--no-export")
    assert reference.returncode == 0, reference.stderr
    asked = [e["vectors"] for e in events(run_dir) if e["type"] == "ask"]
    assert asked == [e["vectors"] for e in events(reference_dir) if e["type"] == "ask"]
    assert summary["best"] == json.loads(reference.stdout)["best"]
    assert (run_dir / "report" / "report.html").exists()


def test_sigterm_stops_like_ctrl_c(tmp_path, tiny_family, tiny_tasks):
    """kill, timeout and service managers send SIGTERM: the run stops through the same path as Ctrl-C (its server
    stopped, its scratch weights removed, its report written), not by dying where it stands."""
    spec = write_spec(tmp_path / "spec.yaml", tiny_family, tiny_tasks, **SEARCH)
    run_dir = tmp_path / "terminated"
    stopped = interrupt_after_first_result(spec, run_dir, signal.SIGTERM)
    assert stopped.returncode == 130, stopped.stderr
    assert f"interrupted — resume with: evomerge run --resume {run_dir}" in stopped.stderr
    assert "Traceback" not in stopped.stderr and (run_dir / "report" / "report.html").exists()


def test_resume_reads_the_pinned_spec_and_checks_its_arguments(tmp_path):
    def run(*args: str):
        return CliRunner().invoke(app, ["run", *args])

    missing = run("--resume", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "no spec.json there" in missing.stderr
    neither = run()
    assert neither.exit_code == 2 and "--resume RUN_DIR" in neither.stderr
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "spec.json").write_text("{}")
    clash = run("--resume", str(tmp_path / "a"), "--run-dir", str(tmp_path / "b"))
    assert clash.exit_code == 2 and "leave out --run-dir" in clash.stderr
    broken = run("--resume", str(tmp_path / "a"))
    assert broken.exit_code == 2 and "not a valid spec" in broken.stderr


def test_ctrl_c_during_the_comparison_ends_cleanly_and_keeps_the_finished_search(tmp_path, tiny_family, tiny_tasks,
                                                                                  monkeypatch):
    """The comparison runs after the search has finished: a Ctrl-C there stops with the interrupted exit code and a
    message, not a traceback, and leaves the finished search (its summary, its report) in place."""
    import evomerge.runner.compare as compare

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "compare_recipes", interrupted)
    spec = write_spec(tmp_path / "spec.yaml", tiny_family, tiny_tasks)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(spec), "--run-dir", str(run_dir), "--no-export"])
    assert result.exit_code == 130, result.output
    assert "interrupted while comparing the evolved merge with the experts" in " ".join(result.output.split())
    assert (run_dir / "summary.json").exists() and (run_dir / "report" / "report.html").exists()
    assert not (run_dir / "comparison.json").exists()
