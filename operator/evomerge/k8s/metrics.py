"""Prometheus metrics of the operator, served on /metrics.

Everything is derived from what the operator watches anyway (MergeSearch status, evaluation Jobs), so the
controller and evaluation pods expose nothing. Labels stay bounded: namespace, search and objective — never
candidate ids or coefficients.
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from .jobs import ACTIVE, job_seconds, job_state

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Suspended")
DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
RECONCILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.searches = Gauge("evomerge_searches", "MergeSearches by phase.", ["phase"], registry=r)
        self.generation = Gauge("evomerge_search_generation", "Generations a search has completed.",
                                ["namespace", "search"], registry=r)
        self.best_score = Gauge("evomerge_search_best_score",
                                "Best candidate's score: objective=fitness is the weighted objective the search maximises.",
                                ["namespace", "search", "objective"], registry=r)
        self.evaluations = Counter("evomerge_evaluations", "Candidate evaluations by result.", ["result"], registry=r)
        self.evaluation_duration = Histogram("evomerge_evaluation_duration_seconds",
                                             "Wall time of evaluation Jobs, from start to completion.",
                                             buckets=DURATION_BUCKETS, registry=r)
        self.reconcile_errors = Counter("evomerge_reconcile_errors", "Reconciles that raised, by resource kind.",
                                        ["kind"], registry=r)
        self.reconcile_duration = Histogram("evomerge_reconcile_duration_seconds", "Time of one reconcile, by kind.",
                                            ["kind"], buckets=RECONCILE_BUCKETS, registry=r)
        self.model_version = Gauge("evomerge_merged_model_version", "Exported version of a MergedModel.",
                                   ["namespace", "model"], registry=r)
        for phase in PHASES:
            self.searches.labels(phase)
        for result in ("succeeded", "failed"):
            self.evaluations.labels(result)
        self._lock = threading.Lock()
        self._phases: dict[str, str] = {}
        self._named: dict[str, tuple[str, str]] = {}
        self._counts: dict[str, tuple[int, int]] = {}
        self._objectives: dict[str, set[str]] = {}
        self._timed_jobs: set[str] = set()
        self._started = time.time()

    def count_requests(self, requests: Callable[[], dict[str, int]]) -> None:
        """Export the operator's own API requests by verb (its load on the API server)."""
        self.registry.register(_RequestCollector(requests))

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, addr=address, registry=self.registry)

    def observe_search(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Update the search gauges from one watch event (status included)."""
        meta, status = body["metadata"], body.get("status") or {}
        uid, namespace, name = meta["uid"], meta["namespace"], meta["name"]
        with self._lock:
            if event_type == "DELETED":
                self._phases.pop(uid, None)
                self._counts.pop(uid, None)
                for objective in self._objectives.pop(uid, set()):
                    self.best_score.remove(namespace, name, objective)
                if self._named.pop(uid, None) is not None:
                    self.generation.remove(namespace, name)
            else:
                self._phases[uid] = status.get("phase") or "Pending"
                self._named[uid] = (namespace, name)
                self.generation.labels(namespace, name).set(int(status.get("generation") or 0))
                self._best(uid, namespace, name, status.get("best") or {})
                self._count_evaluations(uid, int(status.get("evaluations") or 0), int(status.get("failedEvaluations") or 0))
            for phase in PHASES:
                self.searches.labels(phase).set(sum(1 for p in self._phases.values() if p == phase))

    def observe_evaluation_job(self, job: dict[str, Any]) -> bool:
        """Time a finished evaluation Job once, failed or not; True the first time a Job that finished after
        the operator started is seen (earlier ones were reported by an earlier operator)."""
        if job_state(job).phase == ACTIVE:
            return False
        uid = job["metadata"]["uid"]
        with self._lock:
            if uid in self._timed_jobs:
                return False
            self._timed_jobs.add(uid)
        finished = (job.get("status") or {}).get("completionTime") or next(
            (c.get("lastTransitionTime") for c in (job.get("status") or {}).get("conditions") or []
             if c.get("type") in ("Complete", "Failed")), None)
        if not finished or _epoch(finished) < self._started - 1:
            return False
        self.evaluation_duration.observe(job_seconds(job))
        return True

    def observe_model(self, body: dict[str, Any]) -> None:
        meta, status = body["metadata"], body.get("status") or {}
        if status.get("version"):
            self.model_version.labels(meta["namespace"], meta["name"]).set(int(status["version"]))

    def _best(self, uid: str, namespace: str, name: str, best: dict[str, Any]) -> None:
        values = {"fitness": best.get("score"), **(best.get("scores") or {})}
        seen = self._objectives.setdefault(uid, set())
        for objective, value in values.items():
            if value is None:
                continue
            self.best_score.labels(namespace, name, objective).set(float(value))
            seen.add(objective)

    def _count_evaluations(self, uid: str, total: int, failed: int) -> None:
        previous = self._counts.get(uid)
        self._counts[uid] = (total, failed)
        if previous is None:  # first sight (or an operator restart): a baseline, not new work
            return
        new_failed = max(0, failed - previous[1])
        new_ok = max(0, (total - failed) - (previous[0] - previous[1]))
        if new_ok:
            self.evaluations.labels("succeeded").inc(new_ok)
        if new_failed:
            self.evaluations.labels("failed").inc(new_failed)


class _RequestCollector(Collector):
    def __init__(self, requests: Callable[[], dict[str, int]]):
        self.requests = requests

    def collect(self):
        family = CounterMetricFamily("evomerge_api_requests", "Requests the operator sent to the API server, by verb.",
                                     labels=["verb"])
        for verb, count in sorted(self.requests().items()):
            family.add_metric([verb], count)
        yield family


def _epoch(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

