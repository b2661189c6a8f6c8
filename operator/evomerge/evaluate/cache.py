"""A persistent score cache: a recipe scored once under the same evaluation is never scored again.

The runner already reuses scores within one run (by recipe digest); this cache survives runs, restarts
and evaluation pods. A key is the recipe digest plus an *evaluation context*: the objectives (task,
metric, limit), the subsample seed, the engine, the lm-eval version and fingerprints of the model and
task files — so a retrained expert or an edited task YAML never returns a stale score.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

from ..catalogue.contracts import SCORES_FILE
from ..spec.merge_search import Objective

CACHE_DIR_ENV = "EVOMERGE_CACHE_DIR"
# Files whose change changes a model's scores; weights are fingerprinted by size and mtime, not read.
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".model", ".txt", ".jinja")


def default_cache_path() -> Path:
    """$EVOMERGE_CACHE_DIR/scores.sqlite, else ~/.cache/evomerge/scores.sqlite."""
    root = os.environ.get(CACHE_DIR_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "evomerge") / SCORES_FILE


class ScoreCache:
    """Scores by key in one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, scores TEXT NOT NULL, "
                "recipe TEXT NOT NULL, context TEXT NOT NULL, created REAL NOT NULL)"
            )

    def get(self, key: str) -> dict[str, float] | None:
        with self._lock:
            row = self._db.execute("SELECT scores FROM scores WHERE key = ?", (key,)).fetchone()
        return None if row is None else {k: float(v) for k, v in json.loads(row[0]).items()}

    def put(self, key: str, scores: dict[str, float], recipe_digest: str, context: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?)",
                (key, json.dumps(scores, sort_keys=True), recipe_digest, context, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def score_key(recipe_digest: str, context: str) -> str:
    return hashlib.sha256(f"{context}/{recipe_digest}".encode()).hexdigest()


def evaluation_context(
    objectives: Sequence[Objective],
    seed: int,
    engine: str,
    model_dirs: Iterable[Path],
    include_paths: Sequence[str] = (),
) -> str:
    """A digest of everything besides the recipe that decides a candidate's scores."""
    import lm_eval

    described = {
        "objectives": sorted([o.task, o.metric, o.limit or 0] for o in objectives),
        "seed": seed,
        "engine": engine,
        "lmEval": getattr(lm_eval, "__version__", "unknown"),
        "models": [_fingerprint(Path(d), MODEL_FILE_SUFFIXES) for d in model_dirs],
        "tasks": [_fingerprint(Path(p), None) for p in include_paths],
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def _fingerprint(root: Path, suffixes: tuple[str, ...] | None) -> list:
    """Name, size and mtime of the files under `root`: contents are not read (checkpoints are large), and
    the mount point is left out so pods that mount the same files elsewhere share entries."""
    if not root.exists():
        return ["missing", root.name]
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    entries = []
    for file in files:
        if suffixes is not None and not file.name.endswith(suffixes):
            continue
        stat = file.stat()
        entries.append([str(file.relative_to(root)) if file != root else file.name, stat.st_size, stat.st_mtime_ns])
    return entries
