"""The controller's StatusSink: the search's progress as MergeSearch status, written at a bounded rate.

The controller writes only progress fields (round, generation, evaluations, best, summaries, Pareto
front, stopReason); phase and conditions belong to the operator, so the two never overwrite each other.
Counters include the epochs before this one (`offsets`), so re-merges continue the numbers of the history and the
report; epochRound and epochGeneration (kubectl's ROUND and GENERATION) count within this epoch, so ROUND never
exceeds spec.search.rounds however often the spec was edited.
With a `SearchReport`, each generation redraws the report and status.report links it once it exists.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..executors.base import EvalResult
from ..runner.loop import Candidate, SearchOutcome, SearchRunner
from ..spec.merge_search import GenerationSummary, ScoredCandidate
from .client import Kube
from .search_report import SearchReport, shifted

RECENT_GENERATIONS = 10
PARETO_LIMIT = 20


class SearchStatusSink:
    def __init__(self, kube: Kube, search: dict[str, Any], offsets: dict[str, int], min_interval: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, report: SearchReport | None = None,
                 shown_objective: str | None = None):
        """`shown_objective`: the one objective's key, whose measured score is best.value (else the fitness)."""
        meta = search["metadata"]
        self.shown_objective = shown_objective
        self.kube, self.namespace, self.name = kube, meta["namespace"], meta["name"]
        self.offsets = {k: int(offsets.get(k, 0)) for k in ("round", "generation", "evaluations", "failedEvaluations")}
        self.min_interval = min_interval
        self.clock = clock
        self.report = report
        self.runner: SearchRunner | None = None
        self._written = -float("inf")
        self._best: float | None = None

    def bind(self, runner: SearchRunner) -> None:
        self.runner = runner

    # ---- StatusSink -----------------------------------------------------------------------------------
    def started(self, total_evaluations: int | None, resumed_evaluations: int) -> None:
        self._write(force=True)

    def evaluation(self, result: EvalResult, fitness: float | None, best: float | None) -> None:
        improved = best is not None and (self._best is None or best > self._best)
        self._write(force=improved)

    def generation(self, summary: GenerationSummary) -> None:
        if self.report is not None:
            assert self.runner is not None, "bind(runner) first"
            self.report.refresh(self.runner.outcome(""))
        self._write(force=True)

    def finish(self, outcome: SearchOutcome) -> None:
        if self.report is not None:
            self.report.finish(outcome)
        self._write(force=True, stop_reason=outcome.stop_reason, outcome=outcome)

    # ---- status ---------------------------------------------------------------------------------------
    def progress(self, outcome: SearchOutcome | None = None) -> dict[str, Any]:
        """The progress fields of status, in wire form (numbers as strings, as the CRD declares them)."""
        assert self.runner is not None, "bind(runner) first"
        outcome = outcome or self.runner.outcome("")
        off = self.offsets
        round_ = int(getattr(self.runner.optimizer, "round", 0)) + 1
        status: dict[str, Any] = {
            "round": off["round"] + round_,
            "generation": off["generation"] + len(outcome.summaries),
            "epochRound": round_,
            "epochGeneration": len(outcome.summaries),
            "evaluations": off["evaluations"] + outcome.evaluations,
            "failedEvaluations": off["failedEvaluations"] + outcome.failed,
            "generations": [self._shifted(s) for s in outcome.summaries[-RECENT_GENERATIONS:]],
        }
        if outcome.best is not None:
            status["best"] = _scored(outcome.best, with_recipe=True, shown=self.shown_objective)
        if outcome.pareto_front:
            status["paretoFront"] = [_scored(c, with_recipe=False, shown=self.shown_objective)
                                     for c in outcome.pareto_front[:PARETO_LIMIT]]
        if self.report is not None and self.report.written:
            status["report"] = self.report.uri
        return status

    def _shifted(self, summary: GenerationSummary) -> dict[str, Any]:
        moved = shifted(summary.to_wire(), self.offsets)
        moved["round"] += 1  # the status counts rounds from 1
        return moved

    def _write(self, force: bool, stop_reason: str | None = None, outcome: SearchOutcome | None = None) -> None:
        now = self.clock()
        if not force and now - self._written < self.min_interval:
            return
        status = self.progress(outcome)
        if stop_reason is not None:
            status["stopReason"] = stop_reason
        self.kube.patch_status("MergeSearch", self.namespace, self.name, status)
        self._written = now
        best = status.get("best")
        if best is not None and best.get("score") is not None:
            self._best = float(best["score"])


def _scored(candidate: Candidate, with_recipe: bool, shown: str | None = None) -> dict[str, Any]:
    scores = dict(candidate.scores or {})
    value = scores.get(shown, candidate.fitness) if shown is not None else candidate.fitness
    scored = ScoredCandidate(candidate=candidate.id, score=candidate.fitness, value=value, scores=scores,
                             recipe=candidate.recipe if with_recipe else {})
    wire = scored.to_wire()
    if not with_recipe:
        wire.pop("recipe", None)
    return wire
