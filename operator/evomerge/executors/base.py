"""The executor interface: submit candidates, collect results as they finish."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..merge.recipe import MergeRecipe


@dataclass(frozen=True)
class EvalResult:
    candidate: str
    scores: dict[str, float] | None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.scores is not None


class Executor(Protocol):
    def submit(self, candidate: str, recipe: MergeRecipe) -> None: ...

    def wait(self) -> list[EvalResult]:
        """Block until at least one submitted evaluation finishes; return every finished one."""
        ...

    @property
    def pending(self) -> int: ...

    def close(self) -> None: ...
