"""Where the runner reports progress: a terminal, a log, or a MergeSearch status."""

from __future__ import annotations

from typing import Protocol

from ..executors.base import EvalResult
from ..spec.merge_search import GenerationSummary


class StatusSink(Protocol):
    def started(self, total_evaluations: int | None, resumed_evaluations: int) -> None: ...

    def evaluation(self, result: EvalResult, fitness: float | None, best: float | None) -> None: ...

    def generation(self, summary: GenerationSummary) -> None: ...


class NullSink:
    def started(self, total_evaluations: int | None, resumed_evaluations: int) -> None:
        pass

    def evaluation(self, result: EvalResult, fitness: float | None, best: float | None) -> None:
        pass

    def generation(self, summary: GenerationSummary) -> None:
        pass
