"""The progress view of `evomerge run`: plain log lines off a terminal, a live view on one, silence when quiet."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys

from rich.console import Console

from evomerge.cli.progress import TerminalSink, format_duration
from evomerge.executors.base import EvalResult
from evomerge.spec.merge_search import GenerationSummary
from tests.cli.test_run import write_spec

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drive(sink: TerminalSink, clock: FakeClock, resumed: int = 0) -> None:
    """Six planned evaluations: three this session (one failed, one cached) and a generation summary."""
    sink.started(6, resumed)
    clock.now += 10
    sink.evaluation(EvalResult("c000000", {"t/acc": 0.7}, None, 9.5), 0.7, 0.7)
    clock.now += 10
    sink.evaluation(EvalResult("c000001", None, "RuntimeError: boom", 10.0), None, 0.7)
    clock.now += 10
    sink.evaluation(EvalResult("c000002", {"t/acc": 0.7}, None, 0.0), 0.7, 0.7)
    sink.generation(GenerationSummary(round=0, generation=0, count=3, failed=1, best=0.7, mean=0.7, worst=0.7, seconds=30.0))


def test_plain_lines_off_a_terminal_with_counts_best_and_eta():
    out = io.StringIO()
    clock = FakeClock()
    sink = TerminalSink(Console(file=out, force_terminal=False, width=40), clock=clock)
    drive(sink, clock)
    sink.close()
    assert out.getvalue().splitlines() == [
        "search started: 6 evaluations planned",
        "[1/6] c000000 fitness 0.7000 (9.5s); best 0.7000",
        "[2/6] c000001 failed: RuntimeError: boom; best 0.7000",
        "[3/6] c000002 fitness 0.7000 (cached); best 0.7000",
        "round 0 generation 0: best 0.7000 mean 0.7000 worst 0.7000 (3 candidates, 1 failed, 30s)"
        " — 3/6 evaluations, best so far 0.7000, ETA 0:00:30",
    ]
    assert "\x1b[" not in out.getvalue()


def test_resumed_evaluations_count_but_do_not_set_the_pace():
    out = io.StringIO()
    clock = FakeClock()
    sink = TerminalSink(Console(file=out, force_terminal=False), clock=clock)
    drive(sink, clock, resumed=2)
    lines = out.getvalue().splitlines()
    assert lines[0] == "resuming: 2 evaluations replayed from history; 6 evaluations planned"
    assert lines[1].startswith("[3/6] c000000")
    assert lines[-1].endswith("5/6 evaluations, best so far 0.7000, ETA 0:00:10")  # 1 left at 10 s each


def test_eta_is_unknown_before_the_first_evaluation_and_without_a_budget():
    clock = FakeClock()
    sink = TerminalSink(Console(file=io.StringIO(), force_terminal=False), clock=clock)
    sink.started(None, 0)
    assert sink.eta() == "—"
    sink.evaluation(EvalResult("c0", {"a": 1.0}, None, 1.0), 1.0, 1.0)
    assert sink.eta() == "—"
    assert format_duration(3725) == "1:02:05"


def test_quiet_prints_nothing():
    out = io.StringIO()
    clock = FakeClock()
    for terminal in (False, True):
        sink = TerminalSink(Console(file=out, force_terminal=terminal), quiet=True, clock=clock)
        drive(sink, clock)
        sink.close()
    assert out.getvalue() == ""


def test_a_terminal_gets_a_live_view_with_generation_best_and_eta():
    out = io.StringIO()
    clock = FakeClock()
    sink = TerminalSink(Console(file=out, force_terminal=True, width=160), clock=clock)
    assert sink.live
    drive(sink, clock)
    sink.close()
    text = ANSI.sub("", out.getvalue())
    assert "\x1b[" in out.getvalue()
    final = [line for line in text.splitlines() if "round 0 · generation 1" in line][-1]
    assert "3/6" in final and "best 0.7000" in final and "1 failed" in final and "ETA 0:00:30" in final
    assert "evaluation c000001 failed: RuntimeError: boom" in text
    assert "round 0 generation 0: best 0.7000 mean 0.7000" in text
    assert "[1/6]" not in text  # no plain log lines on a terminal


def test_evomerge_run_under_a_pty_shows_the_live_view(tmp_path, tiny_family, tiny_tasks):
    spec = write_spec(tmp_path / "spec.yaml", tiny_family, tiny_tasks, populationSize=2, maxGenerations=2)
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "evomerge.cli.main", "run", str(spec), "--run-dir", str(tmp_path / "run"), "--no-export"],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True, env={**os.environ, "COLUMNS": "150", "TERM": "xterm"},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer of the pty is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert process.wait(timeout=300) == 0
    raw = b"".join(chunks).decode(errors="replace")
    text = ANSI.sub("", raw)
    assert "\x1b[" in raw
    assert "search started: 4 evaluations planned" in text
    assert "evaluations · best" in text and "ETA" in text and "4/4" in text
    assert not re.search(r"^\[\d+/4\]", text, re.M)  # the plain log lines are for pipes
    assert "search finished: maxGenerations reached" in text


def test_evomerge_run_quiet_prints_nothing_and_still_writes_its_run(tmp_path, tiny_family, tiny_tasks):
    spec = write_spec(tmp_path / "spec.yaml", tiny_family, tiny_tasks, populationSize=2, maxGenerations=1)
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "evomerge.cli.main", "run", "--quiet", str(spec), "--run-dir", str(run_dir)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert (run_dir / "summary.json").exists() and (run_dir / "report" / "report.html").exists()
    assert (run_dir / "merged" / "model.safetensors").exists() and (run_dir / "comparison.json").exists()
