"""Showing a search's progress: a live view on a terminal, plain log lines otherwise, nothing when quiet.

Both show the same facts — round and generation, evaluations done of the budget, the best fitness so far,
failures and an ETA from this session's pace (replayed evaluations took no time, so they do not count).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..executors.base import EvalResult
from ..spec.base import format_number
from ..spec.merge_search import GenerationSummary


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TerminalSink:
    """Implements the runner's StatusSink for people."""

    def __init__(self, console: Console | None = None, quiet: bool = False, clock: Callable[[], float] = time.monotonic):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self.clock = clock
        self.progress: Progress | None = None
        self.task = None
        self.total: int | None = None
        self.done = 0
        self.failed = 0
        self.best: float | None = None
        self.current_round = 0
        self.current_generation = 0  # the generation being evaluated (one past the last summary)
        self._session_done = 0
        self._session_start = 0.0

    # ---- StatusSink ---------------------------------------------------------------------------------
    def started(self, total_evaluations: int | None, resumed_evaluations: int) -> None:
        self.total, self.done = total_evaluations, resumed_evaluations
        self._session_start = self.clock()
        if self.quiet:
            return
        planned = f"{total_evaluations} evaluations planned" if total_evaluations else "evaluation budget open"
        if resumed_evaluations:
            self._line(f"resuming: {resumed_evaluations} evaluations replayed from history; {planned}")
        else:
            self._line(f"search started: {planned}")
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]round {task.fields[round]} · generation {task.fields[generation]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("evaluations · best [bold]{task.fields[best]}[/bold]{task.fields[failed]}"),
                TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}"),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("search", total=total_evaluations, completed=resumed_evaluations,
                                               **self._fields())

    def evaluation(self, result: EvalResult, fitness: float | None, best: float | None) -> None:
        self.done += 1
        self._session_done += 1
        self.failed += result.error is not None
        self.best = best
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done, **self._fields())
            if result.error:
                self.progress.console.print(f"evaluation {result.candidate} failed: {result.error}", highlight=False, markup=False)
            return
        if result.error:
            outcome = f"failed: {result.error}"
        elif result.seconds == 0:  # the runner reuses a known score with zero seconds; real evaluations take time
            outcome = f"fitness {_fmt(fitness)} (cached)"
        else:
            outcome = f"fitness {_fmt(fitness)} ({format_number(round(result.seconds, 1))}s)"
        self._line(f"[{self._count()}] {result.candidate} {outcome}; best {_fmt(best)}")

    def generation(self, summary: GenerationSummary) -> None:
        self.current_round, self.current_generation = summary.round, summary.generation + 1
        if self.quiet:
            return
        line = (
            f"round {summary.round} generation {summary.generation}: best {_fmt(summary.best)} "
            f"mean {_fmt(summary.mean)} worst {_fmt(summary.worst)} ({summary.count} candidates, "
            f"{summary.failed} failed, {format_number(round(summary.seconds, 1))}s)"
        )
        if self.progress is not None:
            self.progress.update(self.task, **self._fields())
            self.progress.console.print(line, highlight=False, markup=False)
        else:
            self._line(f"{line} — {self._count()} evaluations, best so far {_fmt(self.best)}, ETA {self.eta()}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    # ---- helpers ------------------------------------------------------------------------------------
    def eta(self) -> str:
        """Time left at this session's pace; '—' before the first evaluation of this session or without a budget."""
        if self.total is None or self._session_done == 0:
            return "—"
        remaining = max(self.total - self.done, 0)
        pace = (self.clock() - self._session_start) / self._session_done
        return format_duration(remaining * pace)

    def _fields(self) -> dict[str, str]:
        return {
            "round": str(self.current_round),
            "generation": str(self.current_generation),
            "best": _fmt(self.best),
            "failed": f" · [red]{self.failed} failed[/red]" if self.failed else "",
            "eta": self.eta(),
        }

    def _count(self) -> str:
        return f"{self.done}/{self.total}" if self.total else str(self.done)

    def _line(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)


def progress_lines(console: Console, quiet: bool) -> Callable[[str], None] | None:
    """Plain progress lines for long work outside a search (the comparison's scorings), as the sink writes its own;
    None when quiet."""
    return None if quiet else lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True)


@contextmanager
def export_progress(console: Console) -> Iterator[Callable[[int, int], None]]:
    """A bar of bytes written while a merge exports, on a terminal; elsewhere nothing (logs get the final line)."""
    if not console.is_terminal:
        yield lambda written, total: None
        return
    with Progress(TextColumn("writing"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("export", total=None)
        yield lambda written, total: bar.update(task, completed=written, total=total)
