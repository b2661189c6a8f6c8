"""The append-only history of a search: every ask, result and tell, in the order they happened.

Optimizers are deterministic given (spec, seed, history), so replaying these events rebuilds the exact
optimizer state of a killed run — resume needs nothing else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Protocol


class HistoryStore(Protocol):
    def events(self) -> list[dict[str, Any]]: ...

    def append(self, event: dict[str, Any]) -> None: ...


class JsonlHistory:
    """One JSON object per line, flushed and fsynced per event so a kill loses at most the line in flight."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        _drop_torn_tail(self.path)
        return list(_complete_lines(self.path))

    def append(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":"), allow_nan=False)
        with self.path.open("a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _drop_torn_tail(path: Path) -> None:
    """A kill mid-write leaves a partial last line; cut it so later appends start on a fresh line."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _complete_lines(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_text().splitlines():
        if line.strip():
            yield json.loads(line)
