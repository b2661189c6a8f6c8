"""The run report in the cluster: what `evomerge run` writes locally, under `<storage.output.uri>/report`.

The controller redraws it after every generation on a thread of its own, so the search never waits on
matplotlib (a redraw still pending when the next generation ends is replaced by the newer one), and once
more, in line, when the epoch ends. The history of earlier epochs (re-merges) comes first, its rounds and
generations numbered on as the status numbers them, so the plots run across every round. Files are
written beside and renamed into place, so a reader never sees half a page. A report that cannot be written is logged and posted as one Warning event per distinct
reason — never a failed search.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from ..catalogue.contracts import REPORT_DIR, REPORT_PAGE
from ..report.run_data import RunData
from ..runner.compare import EVOLVED
from ..runner.loop import SearchOutcome
from ..spec.merge_search import MergeSearchSpec
from .client import Kube
from .controller_events import ControllerEvents
from .history_configmap import ConfigMapHistory
from .naming import epoch_configmap_name
from .render_pods import kept_output_path
from .render_search import read_epoch_configmap
from .settings import ClusterSettings

log = logging.getLogger(__name__)


def report_uri(output_uri: str) -> str:
    """Where the report's page lives: beside the exported versions (`<output>/v1`, …), never inside one."""
    return f"{output_uri.rstrip('/')}/{REPORT_DIR}/{REPORT_PAGE}"


def shifted(item: dict[str, Any], offsets: dict[str, int]) -> dict[str, Any]:
    """An event or generation summary with its round and generation after those of the earlier epochs."""
    return {**item, "round": int(item["round"]) + int(offsets.get("round", 0)),
            "generation": int(item["generation"]) + int(offsets.get("generation", 0))}


def numbered_on(events: list[dict[str, Any]], offsets: dict[str, int], prefix: str = "") -> list[dict[str, Any]]:
    """An epoch's history events with rounds and generations after those of the epochs before it
    (`offsets`, as the operator froze them), and candidate ids prefixed so epochs never collide."""
    moved = []
    for event in events:
        event = shifted(event, offsets) if "round" in event else dict(event)
        if "ids" in event:
            event["ids"] = [prefix + cid for cid in event["ids"]]
        if "id" in event:
            event["id"] = prefix + event["id"]
        if "summary" in event:
            event["summary"] = shifted(event["summary"], offsets)
        moved.append(event)
    return moved


def earlier_epochs(kube: Kube, search: dict[str, Any], epoch: int) -> list[dict[str, Any]]:
    """The history events of epochs 1 … epoch−1, numbered on; an epoch whose ConfigMaps are gone is left out."""
    meta = search["metadata"]
    events: list[dict[str, Any]] = []
    for number in range(1, epoch):
        configmap = kube.get("ConfigMap", meta["namespace"], epoch_configmap_name(meta["name"], number))
        if configmap is None:
            continue
        offsets = read_epoch_configmap(configmap)[2]
        events += numbered_on(ConfigMapHistory(kube, search, number).events(), offsets, f"e{number}-")
    return events


def summary_of(outcome: SearchOutcome, stop_reason: str | None, offsets: dict[str, int] | None = None) -> dict[str, Any]:
    """The summary `evomerge run` writes to summary.json, from the runner's outcome so far; counters
    include the epochs before this one, as the status does."""
    best = outcome.best
    off = offsets or {}
    return {
        "stopReason": stop_reason,
        "evaluations": int(off.get("evaluations", 0)) + outcome.evaluations,
        "failedEvaluations": int(off.get("failedEvaluations", 0)) + outcome.failed,
        "generations": int(off.get("generation", 0)) + len(outcome.summaries),
        "best": None if best is None else {"candidate": best.id, "fitness": best.fitness, "scores": best.scores,
                                           "recipe": best.recipe},
    }


class SearchReport:
    """One epoch's report: `refresh` after each generation, `finish` once at its end."""

    def __init__(self, kube: Kube, search: dict[str, Any], epoch: int, spec: MergeSearchSpec, output_uri: str,
                 settings: ClusterSettings, events: Callable[[], list[dict[str, Any]]],
                 offsets: dict[str, int] | None = None, earlier: list[dict[str, Any]] | None = None):
        self.kube, self.search, self.epoch, self.spec = kube, search, epoch, spec
        self.uri = report_uri(output_uri)
        self.settings = settings
        self.events = events
        self.offsets = dict(offsets or {})
        self.earlier = list(earlier or [])
        self.comparison: list[dict[str, Any]] = []  # rows of search_compare.py, once the epoch has them
        self.written = False  # this controller has put a complete report at `uri`
        self.news = ControllerEvents(kube, search)
        self._pending: RunData | None = None
        self._closed = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._redraw_loop, name="evomerge-report", daemon=True)
        self._thread.start()

    def refresh(self, outcome: SearchOutcome) -> None:
        """Redraw in the background with this generation's state."""
        run = self._run_data(outcome, f"running: generation {len(outcome.summaries)} of epoch {self.epoch} done")
        with self._wake:
            self._pending = run
            self._wake.notify()

    def finish(self, outcome: SearchOutcome) -> None:
        """The final report, in line, after any redraw in flight; the background thread ends."""
        self.close()
        self._write(self._run_data(outcome, outcome.stop_reason))

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._pending = None
            self._wake.notify()
        self._thread.join()

    def _run_data(self, outcome: SearchOutcome, stop_reason: str | None) -> RunData:
        meta = self.search["metadata"]
        events = self.earlier + numbered_on(self.events(), self.offsets)
        summary = summary_of(outcome, stop_reason, self.offsets)
        held_out = next((row["heldOut"] for row in self.comparison if row["name"] == EVOLVED and row["heldOut"]), None)
        if held_out:  # the final merge's held-out score, marked on the progress plot as `evomerge run` marks it
            summary["heldOut"] = held_out
        return RunData.from_parts(f"{meta['namespace']}/{meta['name']}, epoch {self.epoch}", self.spec, events,
                                  summary, self.comparison)

    def _redraw_loop(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                run, self._pending = self._pending, None
            self._write(run)

    def _write(self, run: RunData) -> None:
        from ..report.render import write_report  # matplotlib loads here, not before the first evaluation Job

        try:
            directory = Path(kept_output_path(self.uri, self.settings)).parent
            directory.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))
            try:
                files = write_report(run, staging)
                for path in (*files.images, files.markdown, files.html):  # the page last: it links the rest
                    os.replace(path, directory / path.name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        except Exception as error:  # noqa: BLE001 - whatever breaks the report must not break the search
            self._warn(f"{type(error).__name__}: {error}")
            return
        self.written = True

    def _warn(self, reason: str) -> None:
        message = f"the report was not written to {self.uri} ({reason}) — the search goes on; check storage.output"
        log.warning(message)
        self.news.post("Warning", "ReportFailed", message, once_per=reason)
