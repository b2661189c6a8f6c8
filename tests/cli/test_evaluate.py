"""`evomerge evaluate` scores one model through lm-eval and exits 2 on an unknown task."""

from __future__ import annotations

import json
import subprocess
import sys


def evomerge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evomerge.cli.main", *args], capture_output=True, text=True, timeout=600)


def test_evaluate_prints_the_metric(tiny_family, tiny_tasks):
    result = evomerge("evaluate", str(tiny_family["base"]), "--task", "tiny_colors:acc", "--include-path", str(tiny_tasks),
                      "--device", "cpu")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert set(scores) == {"tiny_colors/acc"} and 0.0 <= scores["tiny_colors/acc"] <= 1.0


def test_unknown_task_is_an_input_error(tiny_family):
    result = evomerge("evaluate", str(tiny_family["base"]), "--task", "no_such_task")
    assert result.returncode == 2
    assert "unknown lm-eval task(s) no_such_task" in result.stderr
