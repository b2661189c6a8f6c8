"""A search killed by SIGKILL mid-generation and run again ends bit-identical to one never killed.

Every optimizer, both modes where supported: the killed process is a real `python` running the runner with
a JSONL history; the resumed one replays that history and goes on. (tests/runner/test_async.py resumes from
every event boundary in-process as well.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import synthetic_search
from .fakes import comparable

REPO = Path(__file__).resolve().parents[2]
CONFIGS = [
    ("evogm", "generational"), ("cmaes", "generational"), ("ga", "generational"), ("random", "generational"),
    ("nsga2", "generational"), ("evogm", "async"), ("ga", "async"), ("random", "async"),
]


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip()]


def search_process(algorithm: str, mode: str, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "tests.runner.synthetic_search", algorithm, mode, str(run_dir)]


def kill_after_results(command: list[str], history: Path, results: int) -> None:
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if history.exists() and history.read_text().count('"type":"result"') >= results:
                break
            time.sleep(0.002)
        assert process.poll() is None, f"the search ended before it could be killed: {process.stderr.read().decode()}"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()


@pytest.mark.parametrize("algorithm,mode", CONFIGS)
def test_killed_search_resumes_bit_identically(tmp_path, algorithm, mode):
    whole = synthetic_search.run(algorithm, mode, tmp_path / "whole")
    reference = events(tmp_path / "whole")

    killed = tmp_path / "killed"
    kill_after_results(search_process(algorithm, mode, killed), killed / "history.jsonl", synthetic_search.POPULATION + 2)
    # the kill aims mid-generation (two results into the second); wherever it lands, the search is unfinished
    assert len(events(killed)) < len(reference)

    resumed = subprocess.run(search_process(algorithm, mode, killed), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert comparable(events(killed)) == comparable(reference)
    assert json.loads(resumed.stdout) == json.loads(json.dumps(synthetic_search.summary(whole)))
