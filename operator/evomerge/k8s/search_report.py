"""The run report in the cluster: what `evomerge run` writes locally, under `<storage.output.uri>/report`.

The controller redraws it after every generation on a thread of its own, so the search never waits on
matplotlib (a redraw still pending when the next generation ends is replaced by the newer one), and once
more, in line, when the epoch ends. Files are written beside and renamed into place, so a reader never
sees half a page. A report that cannot be written is logged and posted as one Warning event per distinct
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

from ..report.run_data import RunData
from ..runner.loop import SearchOutcome
from ..spec.merge_search import MergeSearchSpec
from .client import ApiError, Kube
from .render_pods import pod_path
from .settings import ClusterSettings

log = logging.getLogger(__name__)
COMPONENT = "evomerge-controller"
REPORT_DIR, REPORT_PAGE = "report", "report.html"  # the layout `evomerge run` writes (report.render)


def report_uri(output_uri: str) -> str:
    """Where the report's page lives: beside the exported versions (`<output>/v1`, …), never inside one."""
    return f"{output_uri.rstrip('/')}/{REPORT_DIR}/{REPORT_PAGE}"


def summary_of(outcome: SearchOutcome, stop_reason: str | None) -> dict[str, Any]:
    """The summary `evomerge run` writes to summary.json, from the runner's outcome so far."""
    best = outcome.best
    return {
        "stopReason": stop_reason,
        "evaluations": outcome.evaluations,
        "failedEvaluations": outcome.failed,
        "generations": len(outcome.summaries),
        "best": None if best is None else {"candidate": best.id, "fitness": best.fitness, "scores": best.scores,
                                           "recipe": best.recipe},
    }


class SearchReport:
    """One epoch's report: `refresh` after each generation, `finish` once at its end."""

    def __init__(self, kube: Kube, search: dict[str, Any], epoch: int, spec: MergeSearchSpec, output_uri: str,
                 settings: ClusterSettings, events: Callable[[], list[dict[str, Any]]]):
        self.kube, self.search, self.epoch, self.spec = kube, search, epoch, spec
        self.uri = report_uri(output_uri)
        self.settings = settings
        self.events = events
        self.written = False  # this controller has put a complete report at `uri`
        self._warned: set[str] = set()
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
        return RunData.from_parts(f"{meta['namespace']}/{meta['name']}, epoch {self.epoch}", self.spec, self.events(),
                                  summary_of(outcome, stop_reason))

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
            directory = Path(pod_path(self.uri, self.settings)).parent
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
        if reason in self._warned:
            return
        self._warned.add(reason)
        try:
            self.kube.post_event(self.search, "Warning", "ReportFailed", message, COMPONENT)
        except ApiError as error:
            log.warning("event ReportFailed not posted: %s", error)
