"""In-memory stand-ins for the runner's edges: a history list and executors on a simulated clock."""

from __future__ import annotations

import heapq
from typing import Callable

from evomerge.executors.base import EvalResult
from evomerge.merge.recipe import MergeRecipe


class MemoryHistory:
    def __init__(self, events: list[dict] | None = None) -> None:
        self.list = list(events or [])

    def events(self) -> list[dict]:
        return list(self.list)

    def append(self, event: dict) -> None:
        self.list.append(event)


class ClockExecutor:
    """Evaluations run `workers` at a time on a simulated clock, each taking `duration(candidate id)`.

    Results come back in order of completion, so slow candidates finish after faster, later ones.
    """

    def __init__(self, score: Callable[[str, MergeRecipe], dict[str, float] | None],
                 duration: Callable[[str], float] = lambda cid: 1.0, workers: int = 1):
        self.score, self.duration, self.workers = score, duration, workers
        self.now = 0.0
        self.submitted: list[str] = []
        self.most_in_flight = 0
        self._queue: list[tuple[str, MergeRecipe]] = []
        self._running: list[tuple[float, int, str, MergeRecipe]] = []

    def submit(self, candidate: str, recipe: MergeRecipe) -> None:
        self.submitted.append(candidate)
        self._queue.append((candidate, recipe))
        self._start()

    def _start(self) -> None:
        while self._queue and len(self._running) < self.workers:
            candidate, recipe = self._queue.pop(0)
            heapq.heappush(self._running, (self.now + self.duration(candidate), len(self.submitted), candidate, recipe))
        self.most_in_flight = max(self.most_in_flight, len(self._running) + len(self._queue))

    def wait(self) -> list[EvalResult]:
        if not self._running:
            return []
        finish, _, candidate, recipe = heapq.heappop(self._running)
        seconds = finish - self.now if finish > self.now else 0.0
        self.now = finish
        self._start()
        scores = self.score(candidate, recipe)
        if scores is None:
            return [EvalResult(candidate, None, "RuntimeError: synthetic failure", seconds)]
        return [EvalResult(candidate, scores, None, seconds)]

    @property
    def pending(self) -> int:
        return len(self._running) + len(self._queue)

    def close(self) -> None:
        self._queue.clear()
        self._running.clear()

    def clock(self) -> float:
        return self.now


def comparable(history: list[dict]) -> list[dict]:
    """Events without wall-clock fields: everything else must match bit for bit."""
    out = []
    for event in history:
        event = dict(event)
        event.pop("seconds", None)
        if event["type"] == "generation":
            event["summary"] = {k: v for k, v in event["summary"].items() if k != "seconds"}
        out.append(event)
    return out
