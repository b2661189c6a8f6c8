"""Where zoos live, and how a build lands there atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def cache_root(cache_dir: Path | None = None) -> Path:
    """``cache_dir``, else ``$EVOMERGE_CACHE``, else ``~/.cache/evomerge``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("EVOMERGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "evomerge"


def zoo_dir(cache_dir: Path | None, size: str, seed: int, digest: str) -> Path:
    return cache_root(cache_dir) / "zoo" / f"{size}-{seed}-{digest}"


def build_atomically(final: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build`` into a fresh temporary sibling of ``final``, then rename it into place.

    A killed build leaves only a ``.tmp-*`` directory, never a half-written ``final``. If another
    process finished the same build first, its result is kept and ours is discarded.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-{os.getpid()}-", dir=final.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _remove_abandoned(final: Path) -> None:
    """Delete temporary directories of earlier builds of ``final`` whose process is gone."""
    for tmp in final.parent.glob(f".tmp-{final.name}-*-*"):
        pid = tmp.name[len(f".tmp-{final.name}-"):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
