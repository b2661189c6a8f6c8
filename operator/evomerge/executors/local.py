"""The local executor: evaluations run one at a time in this process, the engine built on first use.

With `lookahead`, the scorer is also told which candidate comes next (`then`), so an engine whose scoring runs
elsewhere (a server) can merge and write that one while the current one is scored.
"""

from __future__ import annotations

import time
import traceback
from collections import deque
from typing import Callable

from ..merge.recipe import MergeRecipe
from .base import EvalResult

Scorer = Callable[[MergeRecipe], dict[str, float]]


class LocalExecutor:
    def __init__(self, make_scorer: Callable[[], Scorer], lookahead: bool = False):
        self._make_scorer = make_scorer
        self._lookahead = lookahead
        self._scorer: Scorer | None = None
        self._queue: deque[tuple[str, MergeRecipe]] = deque()

    def submit(self, candidate: str, recipe: MergeRecipe) -> None:
        self._queue.append((candidate, recipe))

    @property
    def pending(self) -> int:
        return len(self._queue)

    def wait(self) -> list[EvalResult]:
        if not self._queue:
            return []
        if self._scorer is None:
            self._scorer = self._make_scorer()
        candidate, recipe = self._queue.popleft()
        start = time.perf_counter()
        try:
            if self._lookahead:
                scores = self._scorer(recipe, then=self._queue[0][1] if self._queue else None)  # type: ignore[call-arg]
            else:
                scores = self._scorer(recipe)
        except Exception as exc:  # one broken candidate must not end the search
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return [EvalResult(candidate, None, detail, time.perf_counter() - start)]
        return [EvalResult(candidate, scores, None, time.perf_counter() - start)]

    def close(self) -> None:
        self._queue.clear()
