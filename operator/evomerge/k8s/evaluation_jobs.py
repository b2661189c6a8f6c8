"""The real JobBackend of the Kubernetes executor: creates evaluation Jobs, watches them, reads results.

One watch per wait on this epoch's evaluation Jobs (label-selected), resumed from the last resourceVersion
seen, so following a generation costs a few requests rather than a poll per Job.

A Job whose pod cannot start would otherwise sit until evaluation.timeoutSeconds (an hour by default) and
end as a bare DeadlineExceeded. While Jobs are pending, their pods are looked at every STUCK_CHECK_SECONDS
(more often for a short evaluation.timeoutSeconds, so a few looks happen before the deadline):
an image that cannot be pulled or a missing config fails the Job after STUCK_GRACE_SECONDS, naming the
cause (the search counts it as a failed evaluation); an unschedulable pod may yet find a node (an
autoscaler), so its Job runs on, and the scheduler's message is kept for the failure it may end in.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from ..evaluate.placement import candidates_per_pod
from ..evaluate.worker import objective_keys
from ..executors.kubernetes import JobOutcome, KubernetesExecutor
from ..merge.recipe import MergeRecipe
from ..spec.merge_search import MergeSearchSpec
from .api_failures import is_transient, refused_job
from .client import ApiError, Conflict, Gone, Kube
from .controller_events import ControllerEvents
from .jobs import ACTIVE, SUCCEEDED, job_age, job_seconds, job_state, pod_selector, stuck_reason, termination_message
from .naming import CANDIDATES_ANNOTATION, EVALUATION, SEARCH_UID_LABEL, evaluation_job_name, search_labels, selector
from .render_eval import render_eval_job, render_recipes_configmap
from .settings import ClusterSettings

STUCK_CHECK_SECONDS = 30.0
STUCK_GRACE_SECONDS = 120.0
UNSCHEDULABLE = "Unschedulable"
log = logging.getLogger(__name__)


class JobRefused(ValueError):
    """The API server refuses an evaluation Job for good (an invalid pod field, a policy): the spec must change."""
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def evaluation_executor(kube: Kube, search: dict[str, Any], epoch: int, spec: MergeSearchSpec, settings: ClusterSettings,
                        owner: dict[str, Any], component: str = EVALUATION, held_out: bool = False) -> KubernetesExecutor:
    """The executor over this epoch's evaluation Jobs, each scoring up to candidates_per_pod candidates: a batch
    merged and scored in-process, or served from one server start, or one candidate per server start."""
    backend = EvaluationJobs(kube, search, epoch, spec, settings, owner, component, held_out)
    return KubernetesExecutor(backend, objective_keys(spec, held_out), spec.evaluation.parallelism, candidates_per_pod(spec))


class StaleJob(RuntimeError):
    """A Job with the wanted name belongs to an earlier search of the same name that is still being deleted."""


class EvaluationJobs:
    def __init__(self, kube: Kube, search: dict[str, Any], epoch: int, spec: MergeSearchSpec,
                 settings: ClusterSettings, owner: dict[str, Any], component: str = EVALUATION, held_out: bool = False,
                 work_url: str | None = None):
        meta = search["metadata"]
        self.kube = kube
        self.search, self.epoch, self.spec, self.settings, self.owner = search, epoch, spec, settings, owner
        self.component, self.held_out, self.work_url = component, held_out, work_url
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.selector = selector(search_labels(component, self.name, self.uid, epoch))
        self._jobs: dict[str, dict[str, Any] | None] = {}  # None: deleted before it finished
        self._reported: set[str] = set()
        self._version = ""
        self._stuck: dict[str, tuple[str, str]] = {}  # job → why its pod cannot start, as last seen
        self._checked = -float("inf")
        self._queued = int((search.get("status") or {}).get("queuedEvaluations") or 0)  # as status last said it
        self.events = ControllerEvents(kube, search)  # the next stuck Job most likely has the same cause

    def existing(self) -> dict[str, list[str]]:
        items, self._version = self.kube.list_with_version("Job", self.namespace, self.selector)
        for job in items:
            self._jobs[job["metadata"]["name"]] = job
        return {
            job["metadata"]["name"]: (job["metadata"].get("annotations") or {}).get(CANDIDATES_ANNOTATION, "").split(",")
            for job in items
        }

    def job_name(self, candidates: Sequence[str]) -> str:
        return evaluation_job_name(self.name, self.epoch, candidates[0], len(candidates))

    def create(self, name: str, candidates: Sequence[tuple[str, MergeRecipe]]) -> None:
        ids = [cid for cid, _ in candidates]
        job = render_eval_job(self.search, self.epoch, name, ids, self.spec, self.settings, self.owner,
                              self.component, self.held_out, self.work_url)
        try:
            created = self.kube.create(job)
        except Conflict:
            created = self.kube.get("Job", self.namespace, name)
            if created is None or created["metadata"]["labels"].get(SEARCH_UID_LABEL) != self.uid:
                raise StaleJob(f"Job {self.namespace}/{name} belongs to an earlier MergeSearch {self.name}; "
                               "wait until it is deleted") from None
        except ApiError as error:
            if is_transient(error):
                raise
            raise JobRefused(refused_job(f"{self.component} Job {self.namespace}/{name}", error)) from None
        self._jobs[name] = created
        try:
            self.kube.create(render_recipes_configmap(created, candidates))
        except Conflict:
            pass  # a restarted controller re-submits a Job it had created already

    def wait(self, names: set[str], timeout: float) -> list[JobOutcome]:
        deadline = time.monotonic() + timeout
        self._count_queued(names)
        outcomes = self._collect(names) or self._fail_stuck(names)
        while not outcomes and time.monotonic() < deadline:
            left = max(1, int(min(deadline - time.monotonic(), self._check_every())))
            try:
                for kind, job in self.kube.watch("Job", self.namespace, self.selector, self._version, left):
                    self._version = job["metadata"].get("resourceVersion", self._version)
                    if kind == "BOOKMARK":
                        continue
                    self._jobs[job["metadata"]["name"]] = None if kind == "DELETED" else job
                    self._count_queued(names)
                    outcomes = self._collect(names)
                    if outcomes:
                        break
            except Gone:
                self.existing()
                outcomes = self._collect(names)
            outcomes = outcomes or self._fail_stuck(names)
        return outcomes

    def close(self) -> None:
        """Nothing to release: Jobs belong to the controller Job and go with it."""

    def _collect(self, names: set[str]) -> list[JobOutcome]:
        outcomes = []
        for name in sorted(names - self._reported):
            if name not in self._jobs:
                continue
            job = self._jobs[name]
            if job is None:
                outcomes.append(JobOutcome(name, False, None, "Deleted"))
            else:
                state = job_state(job)
                if state.phase == ACTIVE:
                    continue
                pods = self.kube.list("Pod", self.namespace, pod_selector(name))
                message = termination_message(pods, "score")
                if state.phase != SUCCEEDED and message is None:
                    stuck = stuck_reason(pods) or self._stuck.get(name)
                    message = stuck[1] if stuck else state.message
                outcomes.append(JobOutcome(name, state.phase == SUCCEEDED, message, state.reason, job_seconds(job)))
            self._reported.add(name)
        return outcomes

    def _count_queued(self, names: set[str]) -> None:
        """status.queuedEvaluations: how many of the Jobs waited on Kueue has not admitted yet (they are suspended
        until it does), written when the count changes. Not written is not fatal: the next change writes it."""
        queued = sum(1 for n in names - self._reported if ((self._jobs.get(n) or {}).get("spec") or {}).get("suspend"))
        if queued == self._queued:
            return
        try:
            self.kube.patch_status("MergeSearch", self.namespace, self.name, {"queuedEvaluations": queued})
        except ApiError as error:
            log.warning("status.queuedEvaluations not written: %s", error)
            return
        self._queued = queued

    def _fail_stuck(self, names: set[str]) -> list[JobOutcome]:
        """Outcomes for Jobs whose pods cannot start (see the module's docstring); at most one pod list per check."""
        now = time.monotonic()
        if now - self._checked < self._check_every():
            return []
        self._checked = now
        pending = [n for n in sorted(names - self._reported) if self._jobs.get(n) and job_state(self._jobs[n]).phase == ACTIVE]
        queued = [n for n in pending if (self._jobs[n].get("spec") or {}).get("suspend")]  # type: ignore[union-attr]
        if queued:  # waiting for Kueue's admission: not stuck, and its deadline has not started
            self.events.post("Normal", "Queued", f"evaluation Jobs {', '.join(queued)} wait in their Kueue LocalQueue for "
                             "admission; evaluation.timeoutSeconds counts from it", once_per=queued[0])
            pending = [n for n in pending if n not in queued]
        if not pending:
            return []
        by_job: dict[str, list[dict[str, Any]]] = {}
        for pod in self.kube.list("Pod", self.namespace, self.selector):
            by_job.setdefault((pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL, ""), []).append(pod)
        outcomes = []
        for name in pending:
            stuck = stuck_reason(by_job.get(name, []))
            if stuck is None:
                continue
            self._stuck[name] = stuck
            if stuck[0] == UNSCHEDULABLE or job_age(self._jobs[name]) < STUCK_GRACE_SECONDS:  # type: ignore[arg-type]
                continue
            self.kube.delete("Job", self.namespace, name)
            self._reported.add(name)
            message = (f"{stuck[1]} — fix the image or the config it names; "
                       "the Job was deleted rather than left to evaluation.timeoutSeconds")
            outcomes.append(JobOutcome(name, False, message, stuck[0]))
            self.events.post("Warning", "EvaluationStuck", f"evaluation Job {name}: {message}", once_per=stuck[0])
        return outcomes

    def _check_every(self) -> float:
        return min(STUCK_CHECK_SECONDS, self.spec.evaluation.timeout_seconds / 4)
