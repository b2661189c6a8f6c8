"""The evaluation pod's process: `evomerge evaluate-batch` reads its inputs, scores the batch, and reports.

The pod holds no API token: everything goes out through the container's termination message
(scores_message.py), rewritten after every candidate, so a pod that dies mid-batch still tells which
candidates it finished. The same `report` serves the other pod roles (controller, export), which write
one line when they end. torch and lm-eval are imported only once scoring starts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..spec.loading import SpecError, validate_document
from ..spec.merge_search import MergeSearch, MergeSearchSpec
from .scores_message import encode_scores

TERMINATION_LOG_ENV = "EVOMERGE_TERMINATION_LOG"
TERMINATION_LOG = "/dev/termination-log"


class InputError(ValueError):
    """The pod's inputs (spec, recipes, models) are unusable: retrying the pod cannot help."""


def termination_log() -> Path | None:
    """$EVOMERGE_TERMINATION_LOG, else /dev/termination-log when the kubelet provides it."""
    configured = os.environ.get(TERMINATION_LOG_ENV)
    if configured:
        return Path(configured)
    default = Path(TERMINATION_LOG)
    return default if default.exists() else None


def report(message: str, echo: bool = True) -> None:
    """Write the termination message (the whole file: the kubelet keeps what is there when the process ends)."""
    path = termination_log()
    if path is not None:
        path.write_text(message)
    if echo:
        print(message, flush=True)


def read_spec(path: Path) -> MergeSearchSpec:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"--spec {path}: {error}") from None
    try:
        return validate_document(document, str(path), MergeSearch).spec
    except SpecError as error:
        raise InputError(str(error)) from None


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{what} {path}: {error}") from None


def objective_keys(spec: MergeSearchSpec, held_out: bool = False) -> list[str]:
    return [o.key for o in (spec.held_out if held_out else spec.objectives)]


def evaluate_batch(spec_path: Path, recipes_path: Path, model_dir: Path | None, server_url: str | None, held_out: bool,
                   adapter: str | None = None, work_url: str | None = None) -> str:
    """Score every recipe of the batch; the compact message for the termination log (one entry per recipe).

    After each candidate the message so far is written to the termination log (without echo): what the
    executor reads if the pod dies before the end. With `work_url` (an async search's controller, see
    work_client.py) each result goes there instead, and the pod then asks it for candidate after candidate
    until it answers stop; the message is then a one-line count.
    """
    spec = read_spec(spec_path)
    items = read_json(recipes_path, "--recipes")
    if not isinstance(items, list) or not all(isinstance(i, dict) and "recipe" in i for i in items):
        raise InputError(f"--recipes {recipes_path}: expected a JSON list of {{id, recipe}}")
    from .batch import score_batch

    keys = objective_keys(spec, held_out)
    done: list[dict[str, Any]] = []
    client = _work_client(work_url)

    def progress(item: dict[str, Any]) -> None:
        done.append(item)
        if client is not None:
            client.report(item)
        else:
            report(encode_scores(done, keys), echo=False)
        outcome = "scored" if "scores" in item else f"failed: {item.get('error')}"
        count = f"{len(done)}" if client is not None else f"{len(done)}/{len(items)}"
        print(f"candidate {item['id']} ({count}) {outcome}", file=sys.stderr, flush=True)

    try:
        results = score_batch(items, spec, held_out=held_out, model_dir=model_dir, server_url=server_url,
                              adapter=adapter, on_result=progress, more=client.next if client is not None else None)
    finally:
        if client is not None:
            client.close()
    if client is not None:
        failed = sum(1 for item in results if "scores" not in item)
        return f"scored {len(results)} candidates for {work_url} ({failed} failed); the controller said stop"
    return encode_scores(results, keys)


def _work_client(work_url: str | None) -> Any:
    if work_url is None:
        return None
    from .work_client import POD_NAME_ENV, WorkClient

    pod = os.environ.get(POD_NAME_ENV)
    if not pod:
        raise InputError(f"--work-url needs ${POD_NAME_ENV}, the pod's own name (downward API metadata.name), which "
                         "the controller checks")
    return WorkClient(work_url, pod)
