"""Showing a search's progress: a live bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..executors.base import EvalResult
from ..spec.base import format_number
from ..spec.merge_search import GenerationSummary


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


class TerminalSink:
    """Implements the runner's StatusSink for people; quiet mode prints nothing at all."""

    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self.progress: Progress | None = None
        self.task = None

    def started(self, total_evaluations: int | None, resumed_evaluations: int) -> None:
        if self.quiet:
            return
        if resumed_evaluations:
            self.console.print(f"resuming: {resumed_evaluations} evaluations replayed from history")
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(), TextColumn("best {task.fields[best]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("search", total=total_evaluations, completed=resumed_evaluations, best="—")

    def evaluation(self, result: EvalResult, fitness: float | None, best: float | None) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, best=_fmt(best))
        elif not self.quiet and result.error:
            print(f"evaluation {result.candidate} failed: {result.error}", file=sys.stderr)

    def generation(self, summary: GenerationSummary) -> None:
        if self.quiet:
            return
        line = (
            f"round {summary.round} generation {summary.generation}: best {_fmt(summary.best)} "
            f"mean {_fmt(summary.mean)} worst {_fmt(summary.worst)} ({summary.count} candidates, "
            f"{summary.failed} failed, {format_number(round(summary.seconds, 1))}s)"
        )
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
