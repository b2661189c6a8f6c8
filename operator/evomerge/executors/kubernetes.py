"""The Kubernetes executor: candidates become evaluation Jobs; scores come back as termination messages.

This module decides *what* runs: how candidates are grouped into Jobs, how many Jobs run at once, and how
a Job's outcome becomes one result per candidate. *How* a Job is created and watched is a `JobBackend`
(the k8s layer provides the real one), so the pure logic here is tested without a cluster.

The scorer container reports through its termination message (4096 bytes at most), as compact JSON:
`{"k": [objective keys], "s": [[score per key] or null, … per candidate], "e": {"index": "error"}}`.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from ..merge.recipe import MergeRecipe
from .base import EvalResult

MESSAGE_LIMIT = 4096  # bytes the kubelet keeps of a container's termination message
_BUDGET = MESSAGE_LIMIT - 96  # room for braces, keys and a truncation marker
_SCORE_CHARS = 14  # "-1.234567e-05,": the widest a 7-significant-digit score prints
_MIN_ERROR = 24


@dataclass(frozen=True)
class JobOutcome:
    """A finished evaluation Job: did it succeed, what did its scorer say, and why did it fail if it did."""

    name: str
    succeeded: bool
    message: str | None
    reason: str | None = None
    seconds: float = 0.0


class JobBackend(Protocol):
    def existing(self) -> dict[str, list[str]]:
        """Evaluation Jobs already in the cluster for this run (a restarted controller adopts them): name → candidate ids."""
        ...

    def job_name(self, candidates: Sequence[str]) -> str: ...

    def create(self, name: str, candidates: Sequence[tuple[str, MergeRecipe]]) -> None:
        """Create the Job; an existing Job of that name is adopted, not duplicated."""
        ...

    def wait(self, names: set[str], timeout: float) -> list[JobOutcome]:
        """Outcomes of Jobs among `names` that finished and were not reported before; [] after `timeout` seconds."""
        ...

    def close(self) -> None: ...


def max_candidates_per_message(objective_keys: Sequence[str]) -> int:
    """How many candidates' scores fit in one termination message."""
    header = sum(len(json.dumps(k)) + 1 for k in objective_keys) + 16
    per_candidate = _SCORE_CHARS * max(1, len(objective_keys)) + 3
    return max(1, (_BUDGET - header) // per_candidate)


def encode_scores(items: Sequence[dict[str, Any]], objective_keys: Sequence[str]) -> str:
    """The scorer's side: `score_batch` items ({"id", "scores"} | {"id", "error"}) → a message under 4 KiB.

    Errors are cut to share what room the scores leave; scores are kept to 7 significant digits.
    """
    scores: list[list[float] | None] = []
    errors: dict[str, str] = {}
    for index, item in enumerate(items):
        values = item.get("scores")
        if values is None or any(k not in values for k in objective_keys):
            scores.append(None)
            missing = [k for k in objective_keys if values is not None and k not in values]
            errors[str(index)] = item.get("error") or f"scorer returned no {', '.join(missing)}"
        else:
            scores.append([float(f"{float(values[k]):.7g}") for k in objective_keys])
    body: dict[str, Any] = {"k": list(objective_keys), "s": scores}
    text = json.dumps(body, separators=(",", ":"))
    if errors:
        share = max(_MIN_ERROR, (MESSAGE_LIMIT - len(text.encode())) // len(errors))
        while True:
            body["e"] = {k: _truncate(v, share) for k, v in errors.items()}
            text = json.dumps(body, separators=(",", ":"))
            if len(text.encode()) <= MESSAGE_LIMIT or share <= _MIN_ERROR:
                break
            share = max(_MIN_ERROR, share * 3 // 4)
    if len(text.encode()) > MESSAGE_LIMIT:
        raise ValueError(
            f"{len(items)} candidates do not fit in one termination message ({len(text.encode())} bytes) — "
            "lower evaluation.candidatesPerJob"
        )
    return text


def decode_scores(message: str | None, candidates: Sequence[str], objective_keys: Sequence[str]) -> list[tuple[dict[str, float] | None, str | None]]:
    """The executor's side: (scores, error) per candidate of a succeeded Job, in the Job's order."""
    try:
        body = json.loads(message or "")
        keys, scores = body["k"], body["s"]
        errors = body.get("e", {})
        if list(keys) != list(objective_keys) or len(scores) != len(candidates):
            raise ValueError("shape")
    except (ValueError, KeyError, TypeError):
        shown = (message or "").strip()[-300:] or "(empty)"
        problem = f"the scorer's termination message is not a result for these candidates: {shown}"
        return [(None, problem)] * len(candidates)
    out: list[tuple[dict[str, float] | None, str | None]] = []
    for index, values in enumerate(scores):
        if values is None:
            out.append((None, errors.get(str(index), "the scorer reported no score")))
        else:
            out.append((dict(zip(objective_keys, map(float, values))), None))
    return out


def _truncate(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


class KubernetesExecutor:
    """At most `parallelism` Jobs at once; candidates grouped `per_job` to a Job (1 for server engines)."""

    def __init__(
        self,
        backend: JobBackend,
        objective_keys: Sequence[str],
        parallelism: int,
        per_job: int,
        poll_seconds: float = 30.0,
    ):
        self.backend = backend
        self.objective_keys = list(objective_keys)
        self.parallelism = max(1, parallelism)
        self.per_job = max(1, min(per_job, max_candidates_per_message(self.objective_keys)))
        self.poll_seconds = poll_seconds
        self._queue: deque[tuple[str, MergeRecipe]] = deque()
        self._running: dict[str, list[str]] = {}  # job name → candidates, in the Job's order
        self._waiting: set[str] = set()  # candidates whose result is owed to the runner
        self._adoptable = backend.existing()

    def submit(self, candidate: str, recipe: MergeRecipe) -> None:
        self._waiting.add(candidate)
        for name, members in self._adoptable.items():
            if candidate in members:
                self._running.setdefault(name, members)
                return
        self._queue.append((candidate, recipe))

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def wait(self) -> list[EvalResult]:
        while True:
            self._launch()
            if not self._running:
                return []
            results: list[EvalResult] = []
            for outcome in self.backend.wait(set(self._running), self.poll_seconds):
                results.extend(self._results(outcome))
            if results:
                self._launch()  # freed slots start their next Jobs before the runner even looks at these results
                return results

    def close(self) -> None:
        self._queue.clear()
        self.backend.close()

    def _launch(self) -> None:
        while self._queue and len(self._running) < self.parallelism:
            free = self.parallelism - len(self._running)
            size = min(self.per_job, max(1, math.ceil(len(self._queue) / free)))
            batch = [self._queue.popleft() for _ in range(min(size, len(self._queue)))]
            ids = [cid for cid, _ in batch]
            name = self.backend.job_name(ids)
            self.backend.create(name, batch)
            self._running[name] = ids

    def _results(self, outcome: JobOutcome) -> list[EvalResult]:
        members = self._running.pop(outcome.name, None)
        self._adoptable.pop(outcome.name, None)
        if members is None:
            return []
        seconds = outcome.seconds / len(members)
        if outcome.succeeded:
            decoded = decode_scores(outcome.message, members, self.objective_keys)
        else:
            detail = _truncate(outcome.message or "", 600)
            error = f"evaluation Job {outcome.name} failed ({outcome.reason or 'Failed'})" + (f": {detail}" if detail else "")
            decoded = [(None, error)] * len(members)
        results = []
        for cid, (scores, error) in zip(members, decoded):
            if cid in self._waiting:
                self._waiting.discard(cid)
                results.append(EvalResult(cid, scores, error, seconds))
        return results
