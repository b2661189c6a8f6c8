"""The executor of an async search whose evaluation pods swap candidates in place: long-lived worker pods.

`search.mode: async` with a server that reloads weights (placement.asks_for_work): up to
`evaluation.parallelism` evaluation Jobs, each started on one candidate (its merge step writes it and the
server starts on it, as for a batch), whose scorer then keeps asking the controller's work endpoint
(work_endpoint.py) for the next candidate — one server start serves candidates for the epoch's whole life,
and the pods hold no API token. A submitted candidate goes to the endpoint's queue, where the next pod that
asks takes it; while fewer than `parallelism` worker Jobs run, a new Job is started on it instead.

A worker Job that ends holding a candidate fails that candidate with the Job's reason (its pods were
retried first: a replacement pod gets the candidate again). When the runner is done, `close` answers the
pods' asks with 410 (they exit 0, their Jobs complete) for up to CLOSE_GRACE_SECONDS. A restarted controller
cannot be reached by the pods of its predecessor (the endpoint lives at the controller pod's IP), and it has no
record of which Jobs were its predecessor's workers, so it leaves them be: those pods give up after work_client.UNREACHABLE_SECONDS with a permanent exit
(their Jobs fail without retries), the runner's replay submits their candidates again, and the new Jobs get
names of their own (naming.worker_job_name's incarnation).
"""

from __future__ import annotations

import logging
from typing import Any

from ..executors.base import EvalResult
from ..merge.recipe import MergeRecipe
from ..spec.merge_search import MergeSearchSpec
from .client import Kube
from .evaluation_jobs import EvaluationJobs
from .naming import worker_job_name
from .settings import ClusterSettings
from .work_endpoint import WorkEndpoint

log = logging.getLogger(__name__)
CHECK_SECONDS = 1.0
CLOSE_GRACE_SECONDS = 30.0


class WorkerPool:
    """Executor over long-lived evaluation pods that ask for work; see the module docstring."""

    def __init__(self, kube: Kube, search: dict[str, Any], epoch: int, spec: MergeSearchSpec, settings: ClusterSettings,
                 owner: dict[str, Any], pod_ip: str):
        meta = search["metadata"]
        self.kube, self.namespace = kube, meta["namespace"]
        self.parallelism = max(1, spec.evaluation.parallelism)

        def lookup(pod: str) -> dict[str, Any] | None:
            return kube.get("Pod", self.namespace, pod)

        self.endpoint = WorkEndpoint(lookup, meta["uid"], "0.0.0.0", settings.work_port)
        self.jobs = EvaluationJobs(kube, search, epoch, spec, settings, owner,
                                   work_url=f"http://{pod_ip}:{settings.work_port}")
        self.search_name, self.epoch = meta["name"], epoch
        stale = set(self.jobs.existing())  # a predecessor's pods: they ask an address that is gone, and end
        if stale:
            log.info("evaluation Jobs %s belong to the previous controller; their candidates are submitted again",
                     ", ".join(sorted(stale)))
        self._incarnation = 1 + max((int(n.rsplit("-w", 1)[1]) for n in stale if n.rsplit("-w", 1)[-1].isdigit()),
                                    default=0)
        self._running: set[str] = set()
        self._waiting: set[str] = set()

    def submit(self, candidate: str, recipe: MergeRecipe) -> None:
        self._waiting.add(candidate)
        self.endpoint.offer(candidate, recipe)
        self._launch()

    @property
    def pending(self) -> int:
        return len(self._waiting)

    @property
    def workers(self) -> set[str]:
        """The worker Jobs running now."""
        return set(self._running)

    def wait(self) -> list[EvalResult]:
        while self._waiting:
            self._launch()
            results = [r for r in self.endpoint.take_results(CHECK_SECONDS) if r.candidate in self._waiting]
            for outcome in self.jobs.wait(set(self._running), CHECK_SECONDS) if self._running else []:
                self._running.discard(outcome.name)
                held = self.endpoint.release(outcome.name)
                if held is not None and held in self._waiting and all(r.candidate != held for r in results):
                    results.append(EvalResult(held, None, f"evaluation Job {outcome.name} ended ({outcome.reason or 'Failed'}) "
                                                          f"while scoring it: {outcome.message or 'no message'}"))
            for result in results:
                self._waiting.discard(result.candidate)
            if results:
                return results
        return []

    def close(self) -> None:
        """Tell the pods to stop (410 to their next ask) and stop serving once each running Job was told, or after
        CLOSE_GRACE_SECONDS."""
        self.endpoint.close(told=self._running, grace_s=CLOSE_GRACE_SECONDS)

    def _launch(self) -> None:
        """A new worker Job on the oldest queued candidate, while fewer than `parallelism` run."""
        while len(self._running) < self.parallelism:
            first = self.endpoint.withdraw()
            if first is None:
                return
            name = worker_job_name(self.search_name, self.epoch, first[0], self._incarnation)
            self.endpoint.assign(name, *first)
            self.jobs.create(name, [first])
            self._running.add(name)
