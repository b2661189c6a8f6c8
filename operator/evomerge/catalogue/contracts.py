"""What one process promises another: exit codes, the run directory's file names, the history's events.

A Job's podFailurePolicy reads the exit codes the CLI writes; `evomerge report` reads the files `evomerge
run` writes; the runner's replay, the report and the operator's report read the events the runner
appends. Each side reads the contract from here, so neither can change it alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Iterable, Union

# ---- exit codes ---------------------------------------------------------------------------------------
OK = 0
SEARCH_FAILED = 1  # the search ran but failed (too many failed evaluations)
INVALID_INPUT = 2  # bad flags, an invalid spec, unreadable models (typer uses 2 for usage errors too)
SCORER_INPUT_ERROR = 3  # `evomerge evaluate-batch`: a bad candidate or spec, which no retry can fix
SCORER_ORPHANED = 4  # an evaluation pod that asks for work, whose controller is gone: a retry asks the same address
INTERRUPTED = 130  # Ctrl-C; the run directory can be resumed
# Exits no retry can fix: the Job fails at once instead of burning its backoff (on a GPU, for the scorer).
CONTROLLER_PERMANENT_EXITS = (SEARCH_FAILED, INVALID_INPUT)
SCORER_PERMANENT_EXITS = (SCORER_INPUT_ERROR, SCORER_ORPHANED)

# ---- run directory (`evomerge run`; read by `evomerge report` and `--resume`) --------------------------
SPEC_FILE = "spec.json"  # the spec the run was started with, pinned
HISTORY_FILE = "history.jsonl"  # the events below, one per line
SUMMARY_FILE = "summary.json"  # outcome, best candidate and recipe, held-out scores
COMPARISON_FILE = "comparison.json"  # reference merges scored beside the evolved one
COMPARISON_ITEMS_FILE = "comparison_items.json"  # each row's held-out per-item results, behind the table's p-values
SCORES_FILE = "scores.sqlite"  # the score cache (also the name of the shared cache under ~/.cache/evomerge)
MERGED_DIR = "merged"  # the exported best merge
REPORT_DIR, REPORT_PAGE = "report", "report.html"


# ---- history events -----------------------------------------------------------------------------------
class HistoryEventError(ValueError):
    """A history line that is not one of the events below."""


@dataclass(frozen=True)
class Ask:
    """The optimizer proposed these candidates (vectors in the genome's units) in this round and generation;
    `refine`: the local refinement after the search proper (search.refine) proposed them (on the wire only when true)."""

    TYPE: ClassVar[str] = "ask"
    round: int
    generation: int
    ids: tuple[str, ...]
    vectors: tuple[tuple[float, ...], ...] = ()
    refine: bool = False


@dataclass(frozen=True)
class Result:
    """One candidate's scores, or its error; `cached`: reused from an identical earlier candidate or the cache."""

    TYPE: ClassVar[str] = "result"
    id: str
    scores: dict[str, float] | None
    error: str | None = None
    seconds: float = 0.0
    cached: bool = False


@dataclass(frozen=True)
class Tell:
    """These candidates' fitness went back to the optimizer."""

    TYPE: ClassVar[str] = "tell"
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Generation:
    """A generation's summary (spec.GenerationSummary's wire form: round, generation, count, best, …)."""

    TYPE: ClassVar[str] = "generation"
    summary: dict[str, Any] = field(default_factory=dict)


HistoryEvent = Union[Ask, Result, Tell, Generation]
EVENT_TYPES: dict[str, type] = {t.TYPE: t for t in (Ask, Result, Tell, Generation)}


def parse_event(raw: dict[str, Any], index: int | None = None) -> HistoryEvent:
    """The typed event of one history line; `index` (its position) goes into the error."""
    where = f"history event {index}" if index is not None else "history event"
    kind = raw.get("type")
    if kind not in EVENT_TYPES:
        raise HistoryEventError(f"{where}: unknown type {kind!r} (known: {', '.join(EVENT_TYPES)})")
    try:
        if kind == "ask":
            return Ask(int(raw["round"]), int(raw["generation"]), tuple(raw["ids"]),
                       tuple(tuple(float(x) for x in v) for v in raw.get("vectors") or ()), bool(raw.get("refine", False)))
        if kind == "result":
            return Result(str(raw["id"]), raw.get("scores"), raw.get("error"), float(raw.get("seconds") or 0.0),
                          bool(raw.get("cached", False)))
        if kind == "tell":
            return Tell(tuple(raw["ids"]))
        return Generation(dict(raw["summary"]))
    except (KeyError, TypeError, ValueError) as error:
        raise HistoryEventError(f"{where} ({kind}): {type(error).__name__}: {error}") from None


def parse_events(raw: Iterable[dict[str, Any]]) -> list[HistoryEvent]:
    return [parse_event(event, i) for i, event in enumerate(raw)]


def event_wire(event: HistoryEvent) -> dict[str, Any]:
    """The JSON object a history store keeps (lists where the record holds tuples)."""
    body = {k: [list(v) for v in value] if k == "vectors" else list(value) if isinstance(value, tuple) else value
            for k, value in asdict(event).items() if not (k == "refine" and not value)}  # histories before refine read on
    return {"type": event.TYPE, **body}
