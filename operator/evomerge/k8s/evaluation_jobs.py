"""The real JobBackend of the Kubernetes executor: creates evaluation Jobs, watches them, reads results.

One watch per wait on this epoch's evaluation Jobs (label-selected), resumed from the last resourceVersion
seen, so following a generation costs a few requests rather than a poll per Job.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from ..executors.kubernetes import JobOutcome
from ..merge.recipe import MergeRecipe
from ..spec.merge_search import MergeSearchSpec
from .client import Conflict, Gone, Kube
from .jobs import ACTIVE, SUCCEEDED, job_seconds, job_state, pod_selector, termination_message
from .naming import CANDIDATES_ANNOTATION, EVALUATION, SEARCH_UID_LABEL, evaluation_job_name, search_labels, selector
from .render_eval import render_eval_job, render_recipes_configmap
from .settings import ClusterSettings


class StaleJob(RuntimeError):
    """A Job with the wanted name belongs to an earlier search of the same name that is still being deleted."""


class EvaluationJobs:
    def __init__(self, kube: Kube, search: dict[str, Any], epoch: int, spec: MergeSearchSpec,
                 settings: ClusterSettings, owner: dict[str, Any]):
        meta = search["metadata"]
        self.kube = kube
        self.search, self.epoch, self.spec, self.settings, self.owner = search, epoch, spec, settings, owner
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.selector = selector(search_labels(EVALUATION, self.name, self.uid, epoch))
        self._jobs: dict[str, dict[str, Any] | None] = {}  # None: deleted before it finished
        self._reported: set[str] = set()
        self._version = ""

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
        job = render_eval_job(self.search, self.epoch, name, ids, self.spec, self.settings, self.owner)
        try:
            created = self.kube.create(job)
        except Conflict:
            created = self.kube.get("Job", self.namespace, name)
            if created is None or created["metadata"]["labels"].get(SEARCH_UID_LABEL) != self.uid:
                raise StaleJob(f"Job {self.namespace}/{name} belongs to an earlier MergeSearch {self.name}; "
                               "wait until it is deleted") from None
        self._jobs[name] = created
        try:
            self.kube.create(render_recipes_configmap(created, candidates))
        except Conflict:
            pass  # a restarted controller re-submits a Job it had created already

    def wait(self, names: set[str], timeout: float) -> list[JobOutcome]:
        deadline = time.monotonic() + timeout
        outcomes = self._collect(names)
        while not outcomes and time.monotonic() < deadline:
            left = max(1, int(deadline - time.monotonic()))
            try:
                for kind, job in self.kube.watch("Job", self.namespace, self.selector, self._version, left):
                    self._version = job["metadata"].get("resourceVersion", self._version)
                    if kind == "BOOKMARK":
                        continue
                    self._jobs[job["metadata"]["name"]] = None if kind == "DELETED" else job
                    outcomes = self._collect(names)
                    if outcomes:
                        break
            except Gone:
                self.existing()
                outcomes = self._collect(names)
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
                    message = state.message
                outcomes.append(JobOutcome(name, state.phase == SUCCEEDED, message, state.reason, job_seconds(job)))
            self._reported.add(name)
        return outcomes
