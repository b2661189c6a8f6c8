"""What a report is made of, read from a run's files only: spec.json, history.jsonl, summary.json, comparison.json.

The controller keeps the same events in its history store and the same summary in the MergeSearch
status, so it builds a `RunData` with `from_parts` and renders the very report `evomerge run` writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..catalogue.contracts import (
    COMPARISON_FILE, COMPARISON_ITEMS_FILE, HISTORY_FILE, SPEC_FILE, SUMMARY_FILE, Ask, Generation, HistoryEventError, Result,
    parse_events,
)
from ..evaluate.items import items_to_json
from ..evaluate.paired import PairedTest
from ..evaluate.scoring import fitness, fitness_vector
from ..spec.merge_search import GenerationSummary, MergeSearchSpec, Objective


class RunDataError(ValueError):
    """A run directory that cannot be reported on."""


@dataclass(frozen=True)
class CandidateRecord:
    id: str
    round: int
    generation: int
    scores: dict[str, float] | None
    error: str | None
    fitness: float | None
    cached: bool = False
    refine: bool = False  # proposed by the local refinement after the search proper (search.refine)


@dataclass(frozen=True)
class Refinement:
    """What search.refine did: its evaluations, the best of the search proper it started from, the best after it."""

    evaluations: int
    start: CandidateRecord
    best: CandidateRecord  # `start` when no step found anything better

    @property
    def gain(self) -> float:
        return float(self.best.fitness) - float(self.start.fitness)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ComparisonRow:
    """One reference or evolved merge scored on both splits (runner/compare.py's Comparison, as JSON)."""

    name: str
    search: dict[str, float]
    held_out: dict[str, float]
    evolved_test: PairedTest | None = None  # the evolved merge against this row, on the held-out items


@dataclass(frozen=True)
class RunData:
    name: str
    spec: MergeSearchSpec
    candidates: tuple[CandidateRecord, ...]
    generations: tuple[GenerationSummary, ...]
    summary: dict[str, Any] = field(default_factory=dict)
    comparison: tuple[ComparisonRow, ...] = ()

    @classmethod
    def from_parts(
        cls,
        name: str,
        spec: MergeSearchSpec | dict[str, Any],
        events: Iterable[dict[str, Any]],
        summary: dict[str, Any] | None = None,
        comparison: Sequence[dict[str, Any]] | None = None,
    ) -> "RunData":
        """A run from its spec, its history events (ask/result/tell/generation) and its summary, if any."""
        spec = spec if isinstance(spec, MergeSearchSpec) else MergeSearchSpec.model_validate(spec)
        where: dict[str, tuple[int, int, bool]] = {}
        results: dict[str, Result] = {}
        generations: list[GenerationSummary] = []
        try:
            parsed = parse_events(events)
        except HistoryEventError as error:
            raise RunDataError(str(error)) from None
        for event in parsed:
            if isinstance(event, Ask):
                for cid in event.ids:
                    where[cid] = (event.round, event.generation, event.refine)
            elif isinstance(event, Result):
                results[event.id] = event
            elif isinstance(event, Generation):
                generations.append(GenerationSummary.model_validate(event.summary))
        candidates = []
        for cid, (round_, generation, refine) in where.items():
            result = results.get(cid)
            scores = result.scores if result else None
            candidates.append(CandidateRecord(
                cid, round_, generation, scores, result.error if result else None,
                _fitness(spec.objectives, scores), result.cached if result else False, refine,
            ))
        rows = tuple(
            ComparisonRow(str(r["name"]), dict(r.get("search", {})), dict(r.get("heldOut", r.get("held_out", {}))),
                          PairedTest.from_dict(r["evolvedTest"]) if r.get("evolvedTest") else None)
            for r in comparison or ()
        )
        return cls(name, spec, tuple(candidates), tuple(generations), dict(summary or {}), rows)

    # ---- derived views ----------------------------------------------------------------------------
    @property
    def scored(self) -> list[CandidateRecord]:
        return [c for c in self.candidates if c.fitness is not None]

    @property
    def failed(self) -> list[CandidateRecord]:
        return [c for c in self.candidates if c.error is not None]

    @property
    def best(self) -> CandidateRecord | None:
        """The summary's best candidate when there is a summary (it is what was exported), else the top fitness."""
        chosen = (self.summary.get("best") or {}).get("candidate")
        by_id = {c.id: c for c in self.candidates}
        if chosen in by_id:
            return by_id[chosen]
        return max(self.scored, key=lambda c: c.fitness, default=None)  # type: ignore[arg-type,return-value]

    @property
    def refinement(self) -> Refinement | None:
        """The local refinement's outcome, once it has asked (None without search.refine or before it starts)."""
        refined = [c for c in self.candidates if c.refine]
        searched = [c for c in self.scored if not c.refine]
        if not refined or not searched:
            return None
        start = max(searched, key=lambda c: c.fitness)  # type: ignore[arg-type,return-value]
        best = max([start, *(c for c in refined if c.fitness is not None)], key=lambda c: c.fitness)  # type: ignore[arg-type,return-value]
        return Refinement(len(refined), start, best)

    @property
    def best_recipe(self) -> dict[str, Any] | None:
        return (self.summary.get("best") or {}).get("recipe")

    @property
    def held_out(self) -> dict[str, float]:
        return {k: float(v) for k, v in (self.summary.get("heldOut") or {}).items()}

    @property
    def held_out_fitness(self) -> float | None:
        """The held-out scores of the final merge as one number on the search fitness's scale."""
        return _fitness(self.spec.held_out, self.held_out) if self.spec.held_out else None

    def per_objective(self, objective: Objective) -> list[tuple[int, float, float]]:
        """(generation, best, mean) of one objective's raw metric over each generation's scored candidates."""
        by_generation: dict[int, list[float]] = {}
        for c in self.scored:
            if c.scores and objective.key in c.scores:
                by_generation.setdefault(c.generation, []).append(float(c.scores[objective.key]))
        pick = max if objective.direction == "maximize" else min
        return [(g, pick(v), sum(v) / len(v)) for g, v in sorted(by_generation.items())]

    def pareto_front(self) -> list[CandidateRecord]:
        """Non-dominated candidates over every objective (each maximised after normalising direction)."""
        if len(self.spec.objectives) < 2:
            return []
        points = [(c, fitness_vector(self.spec.objectives, c.scores or {})) for c in self.scored]
        front: list[CandidateRecord] = []
        seen: set[tuple[float, ...]] = set()
        for c, p in points:
            dominated = any(all(q_i >= p_i for q_i, p_i in zip(q, p)) and q != p for _, q in points)
            if not dominated and p not in seen:
                seen.add(p)
                front.append(c)
        return front

    def round_starts(self) -> list[tuple[int, int]]:
        """(round, first generation) for every round after the first."""
        starts = []
        previous = None
        for summary in self.generations:
            if previous is not None and summary.round != previous:
                starts.append((summary.round, summary.generation))
            previous = summary.round
        return starts


def load_run(run_dir: Path) -> RunData:
    """Read a run directory written by `evomerge run` (an unfinished one too: it has no summary yet)."""
    run_dir = Path(run_dir)
    spec_file = run_dir / SPEC_FILE
    if not spec_file.exists():
        raise RunDataError(f"{run_dir}: no {SPEC_FILE} — is this a run directory of `evomerge run`?")
    summary = _read_json(run_dir / SUMMARY_FILE)
    comparison = _read_json(run_dir / COMPARISON_FILE)
    return RunData.from_parts(
        run_dir.resolve().name,
        json.loads(spec_file.read_text()),
        _read_events(run_dir / HISTORY_FILE),
        summary if isinstance(summary, dict) else None,
        comparison if isinstance(comparison, list) else None,
    )


def write_comparison(run_dir: Path, rows: Iterable[Any]) -> Path:
    """Store reference comparisons (runner/compare.py's Comparison objects) where the report finds them, and
    their held-out per-item results beside them."""
    rows = list(rows)
    data = [{"name": r.name, "search": dict(r.search), "heldOut": dict(r.held_out),
             **({"evolvedTest": r.evolved_test.to_dict()} if r.evolved_test is not None else {})} for r in rows]
    path = Path(run_dir) / COMPARISON_FILE
    path.write_text(json.dumps(data, indent=2))
    items = {r.name: items_to_json(r.items) for r in rows if r.items}
    if items:
        (Path(run_dir) / COMPARISON_ITEMS_FILE).write_text(json.dumps(items))
    return path


def _fitness(objectives: Sequence[Objective], scores: dict[str, Any] | None) -> float | None:
    if not scores or any(o.key not in scores for o in objectives):
        return None
    value = fitness(objectives, {k: float(v) for k, v in scores.items()})
    return value if math.isfinite(value) else None


def _read_json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunDataError(f"{path}: not valid JSON ({exc}) — delete it or rerun the command that writes it") from None


def _read_events(path: Path) -> list[dict[str, Any]]:
    """History events; a torn last line (a kill mid-write) is left out, as the runner does on resume."""
    if not path.exists():
        return []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    events = []
    for number, line in enumerate(complete.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            raise RunDataError(f"{path}:{number}: not a JSON event — the history is damaged") from None
    return events
