"""The Kubernetes executor: candidates become evaluation Jobs; scores come back as termination messages.

This module decides *what* runs: how candidates are grouped into Jobs, how many Jobs run at once, and how
a Job's outcome becomes one result per candidate. *How* a Job is created and watched is a `JobBackend`
(the k8s layer provides the real one), so the pure logic here is tested without a cluster.

The scorer container reports through its termination message (evaluate/scores_message.py), rewritten
after every candidate: when a pod dies mid-batch, the candidates before the one in flight keep their
scores, the one in flight fails with the pod's reason, and the ones it never reached go back to the
queue — a dead pod costs at most one candidate.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol, Sequence

from ..evaluate.scores_message import Decoded, decode_progress, decode_scores, max_candidates_per_message, truncate
from ..merge.recipe import MergeRecipe
from .base import EvalResult


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
        self._recipes: dict[str, MergeRecipe] = {}  # of the candidates owed, to queue again those a dead pod never reached
        self._running: dict[str, list[str]] = {}  # job name → candidates, in the Job's order
        self._waiting: set[str] = set()  # candidates whose result is owed to the runner
        self._adoptable = backend.existing()

    def submit(self, candidate: str, recipe: MergeRecipe) -> None:
        self._waiting.add(candidate)
        self._recipes[candidate] = recipe
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
        if outcome.succeeded:
            decoded = decode_scores(outcome.message, members, self.objective_keys)
        else:
            decoded = self._failed(outcome, members)
        seconds = outcome.seconds / max(1, len(decoded))
        results = []
        for cid, (scores, error) in zip(members, decoded):
            if cid in self._waiting:
                self._waiting.discard(cid)
                self._recipes.pop(cid, None)
                results.append(EvalResult(cid, scores, error, seconds))
        return results

    def _failed(self, outcome: JobOutcome, members: list[str]) -> Decoded:
        """What a failed Job's scorer reported before it died, the Job's failure for the candidate in flight;
        the candidates after it go back to the front of the queue (see the module's docstring)."""
        reached = decode_progress(outcome.message, members, self.objective_keys)
        detail = "" if reached is not None else truncate(outcome.message or "", 600)
        error = f"evaluation Job {outcome.name} failed ({outcome.reason or 'Failed'})" + (f": {detail}" if detail else "")
        if reached is None:
            return [(None, error)] * len(members)
        unreached = [cid for cid in members[len(reached) + 1:] if cid in self._waiting and cid in self._recipes]
        self._queue.extendleft(reversed([(cid, self._recipes[cid]) for cid in unreached]))
        return reached + [(None, error)] if len(reached) < len(members) else reached
