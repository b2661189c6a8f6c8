"""plan_search as a pure function: a MergeSearch and what exists → children to make, status, events."""

from __future__ import annotations

import copy

import pytest

from evomerge.k8s import reconcile_search
from evomerge.k8s.client import ApiError
from evomerge.k8s.conditions import find
from evomerge.k8s.reconcile_search import SearchObservation, plan_search
from evomerge.k8s.reconcile_state import ReconcileState
from evomerge.k8s.render_search import read_epoch_configmap
from evomerge.k8s.settings import ClusterSettings

NOW = "2026-01-01T00:00:00Z"
SETTINGS = ClusterSettings()
RECIPE = {"method": "task_arithmetic", "baseUri": "pvc://m/base", "groups": ["all"], "options": {},
          "experts": [{"name": "a", "uri": "pvc://m/a", "params": {"weight": {"all": 0.7}}},
                      {"name": "b", "uri": "pvc://m/b", "params": {"weight": {"all": 0.2}}}]}


def search(status: dict | None = None, generation: int = 1, **spec) -> dict:
    body = {
        "apiVersion": "evomerge.dev/v1alpha1", "kind": "MergeSearch",
        "metadata": {"name": "jp", "namespace": "ns", "uid": "uid-1", "generation": generation},
        "spec": {"baseModel": {"uri": "pvc://m/base"},
                 "experts": [{"name": "a", "uri": "pvc://m/a"}, {"name": "b", "uri": "pvc://m/b"}],
                 "objectives": [{"task": "t"}], "storage": {"output": {"uri": "pvc://out/jp"}}, **spec},
    }
    if status is not None:
        body["status"] = status
    return body


def created(plan, kind: str) -> list[dict]:
    return [o for o in plan.create if o["kind"] == kind]


def condition(status: dict, type_: str) -> tuple[str, str]:
    c = find(status["conditions"], type_)
    return c["status"], c["reason"]


def stored(obj: dict) -> dict:
    """An object as the API server returns it."""
    out = copy.deepcopy(obj)
    out["metadata"]["resourceVersion"] = "1"
    return out


def job(body: dict, conditions: list | None = None) -> dict:
    done = stored(body)
    done["status"] = {"conditions": conditions or []}
    return done


def applied(body: dict, plan) -> dict:
    """The search after its status patch (a merge patch: None deletes a field)."""
    status = {**(body.get("status") or {}), **plan.status}
    return {**body, "status": {k: v for k, v in status.items() if v is not None}}


def started(body: dict) -> tuple[dict, SearchObservation]:
    """The search after its first reconcile: status applied, epoch ConfigMap and controller Job existing."""
    plan = plan_search(body, SearchObservation(), SETTINGS, NOW)
    observed = SearchObservation(controller_jobs=[job(created(plan, "Job")[0])],
                                 epoch_configmap=stored(created(plan, "ConfigMap")[0]))
    return applied(body, plan), observed


def test_first_reconcile_starts_epoch_one_with_a_controller_job_and_standard_conditions():
    plan = plan_search(search(), SearchObservation(), SETTINGS, NOW)

    kinds = [o["kind"] for o in plan.create]
    assert kinds == ["ConfigMap", "ServiceAccount", "ServiceAccount", "RoleBinding", "Job"]
    status = plan.status
    assert status["phase"] == "Running" and status["epoch"] == 1 and status["observedGeneration"] == 1
    assert status["controllerJob"] == created(plan, "Job")[0]["metadata"]["name"]
    assert condition(status, "Ready") == ("False", "Searching")
    assert condition(status, "Progressing") == ("True", "Searching")
    assert condition(status, "Degraded") == ("False", "AsExpected")
    assert all(c["observedGeneration"] == 1 and c["lastTransitionTime"] == NOW for c in status["conditions"])
    assert [e.reason for e in plan.events] == ["EpochStarted"]


def test_a_running_controller_keeps_the_search_running_without_new_children():
    body, observed = started(search())

    plan = plan_search(body, observed, SETTINGS, "2026-01-01T00:05:00Z")

    assert plan.create == [] and plan.delete == [] and plan.events == []
    assert plan.status["phase"] == "Running"
    assert find(plan.status["conditions"], "Ready")["lastTransitionTime"] == NOW  # unchanged status keeps its time


def test_a_completed_controller_succeeds_and_publishes_the_merged_model():
    body, observed = started(search())
    body["status"].update(best={"candidate": "c000003", "score": "0.8", "scores": {"t/acc": "0.8"}, "recipe": RECIPE},
                          stopReason="maxGenerations reached", evaluations=12)
    observed.controller_jobs = [job(observed.controller_jobs[0], [{"type": "Complete", "status": "True"}])]

    plan = plan_search(body, observed, SETTINGS, NOW)

    assert plan.status["phase"] == "Succeeded" and plan.status["completionTime"] == NOW
    assert condition(plan.status, "Ready") == ("True", "Succeeded")
    assert condition(plan.status, "Progressing") == ("False", "Finished")
    (model,) = created(plan, "MergedModel")
    assert model["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert model["metadata"]["annotations"]["evomerge.dev/epoch"] == "1"
    assert model["spec"]["version"] == 1 and model["spec"]["recipe"] == RECIPE
    assert model["spec"]["outputUri"] == "pvc://out/jp/v1"
    assert [entry["name"] for entry in model["spec"]["lineage"]] == ["base", "a", "b"]
    assert model["spec"]["scores"] == {"search": {"t/acc": "0.8"}}
    assert [e.reason for e in plan.events] == ["Succeeded", "Published"]
    assert plan.status["mergedModel"] == "jp"


def test_a_failed_controller_degrades_the_search_with_its_own_message():
    body, observed = started(search())
    observed.controller_jobs = [job(observed.controller_jobs[0], [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}])]
    observed.controller_message = "SearchFailed: 11 evaluations failed (evaluation.maxFailedEvaluations is 10)"

    plan = plan_search(body, observed, SETTINGS, NOW)

    assert plan.status["phase"] == "Failed"
    assert condition(plan.status, "Degraded") == ("True", "SearchFailed")
    assert "maxFailedEvaluations is 10" in find(plan.status["conditions"], "Degraded")["message"]
    (event,) = plan.events
    assert event.type == "Warning" and "edit the spec to retry" in event.message
    # nothing restarts it until the spec changes
    again = plan_search(applied(body, plan), observed, SETTINGS, NOW)
    assert again.create == [] and again.status["phase"] == "Failed" and again.events == []


def test_a_controller_whose_pod_is_gone_reads_restarting_not_running():
    body, observed = started(search())
    body["status"]["controllerStarts"] = 2  # its second pod ran, and went (a drain, an eviction, a deletion)
    name = body["status"]["controllerJob"]
    observed.controller_jobs[0]["status"] = {"active": 1, "ready": 0}

    plan = plan_search(body, observed, SETTINGS, NOW)

    ready = find(plan.status["conditions"], "Ready")
    assert plan.status["phase"] == "Running" and ready["reason"] == "Searching"
    assert ready["message"] == f"controller Job {name} is restarting (2): the next pod resumes from the history"
    observed.controller_jobs[0]["status"] = {"active": 1, "ready": 1}
    running = plan_search(applied(body, plan), observed, SETTINGS, NOW)
    assert find(running.status["conditions"], "Ready")["message"] == f"controller Job {name} is running"


def test_evaluation_jobs_waiting_for_kueue_are_named_in_the_running_message_until_admitted():
    body, observed = started(search(evaluation={"queueName": "team-a"}))
    name = body["status"]["controllerJob"]
    observed.controller_jobs[0]["spec"]["suspend"] = False  # Kueue admitted the controller
    body["status"]["queuedEvaluations"] = 2  # the controller's count of its suspended evaluation Jobs

    waiting = plan_search(body, observed, SETTINGS, NOW)
    message = f"controller Job {name} is running; 2 evaluation Jobs wait in Kueue LocalQueue team-a for admission"
    assert waiting.status["phase"] == "Running" and condition(waiting.status, "Progressing") == ("True", "Searching")
    assert [find(waiting.status["conditions"], t)["message"] for t in ("Ready", "Progressing")] == [message, message]
    body["status"]["queuedEvaluations"] = 1
    one = plan_search(applied(body, waiting), observed, SETTINGS, NOW)
    assert find(one.status["conditions"], "Ready")["message"].endswith("; 1 evaluation Job waits in Kueue LocalQueue team-a for admission")
    body["status"]["queuedEvaluations"] = 0
    admitted = plan_search(applied(body, one), observed, SETTINGS, NOW)
    assert find(admitted.status["conditions"], "Ready")["message"] == f"controller Job {name} is running"

    edited = applied(body, waiting)
    edited["metadata"]["generation"] = 2
    edited["spec"]["objectives"] = [{"task": "t2"}]
    assert plan_search(edited, observed, SETTINGS, NOW).status["queuedEvaluations"] is None  # the next epoch counts anew


def test_a_lost_history_degrades_the_running_and_finished_epoch_and_the_next_epoch_clears_it():
    body, observed = started(search())
    lost = "history chunk 1 of epoch 1 is missing: replay keeps the first 3 events and the search evaluates again from there"
    body["status"]["historyLost"] = lost  # the controller's, on finding the gap

    running = plan_search(body, observed, SETTINGS, NOW)
    assert running.status["phase"] == "Running" and condition(running.status, "Degraded") == ("True", "HistoryLost")
    assert find(running.status["conditions"], "Degraded")["message"] == lost
    observed.controller_jobs = [job(observed.controller_jobs[0], [{"type": "Complete", "status": "True"}])]
    done = plan_search(applied(body, running), observed, SETTINGS, NOW)
    assert done.status["phase"] == "Succeeded" and condition(done.status, "Degraded") == ("True", "HistoryLost")

    edited = applied(body, done)
    edited["metadata"]["generation"] = 2
    edited["spec"]["objectives"] = [{"task": "t2"}]
    epoch2 = plan_search(edited, observed, SETTINGS, NOW)
    assert epoch2.status["epoch"] == 2 and epoch2.status["historyLost"] is None
    assert condition(epoch2.status, "Degraded") == ("False", "AsExpected")


def test_a_controller_that_crashed_is_explained_by_its_tracebacks_last_line():
    body, observed = started(search())
    observed.controller_jobs = [job(observed.controller_jobs[0], [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])]
    observed.controller_message = ("Traceback (most recent call last):\n" + '  File "x.py", line 1, in <module>\n' * 40 +
                                   "evomerge.k8s.client.ApiError: 500 InternalError: etcdserver: request timed out\n")

    plan = plan_search(body, observed, SETTINGS, NOW)

    message = find(plan.status["conditions"], "Degraded")["message"]
    assert message.endswith("(BackoffLimitExceeded): evomerge.k8s.client.ApiError: 500 InternalError: etcdserver: request timed out")
    assert "Traceback" not in message and "\n" not in message


def test_a_controller_pod_that_cannot_start_degrades_the_search_until_it_can():
    body, observed = started(search())
    observed.controller_stuck = ("Unschedulable", 'pod jp-1 cannot be scheduled: persistentvolumeclaim "cache" not found')

    plan = plan_search(body, observed, SETTINGS, NOW)

    assert plan.status["phase"] == "Pending"
    assert condition(plan.status, "Degraded") == ("True", "Unschedulable")
    assert '"cache" not found' in find(plan.status["conditions"], "Degraded")["message"]
    (event,) = plan.events
    assert (event.type, event.reason) == ("Warning", "Unschedulable")
    body = applied(body, plan)
    assert plan_search(body, observed, SETTINGS, NOW).events == []  # one Warning, not one per resync
    observed.controller_stuck = None
    recovered = plan_search(body, observed, SETTINGS, NOW)
    assert recovered.status["phase"] == "Running" and condition(recovered.status, "Degraded") == ("False", "AsExpected")


def test_suspend_deletes_the_controller_and_resume_recreates_it():
    body, observed = started(search())
    name = body["status"]["controllerJob"]

    suspended = plan_search({**body, "spec": {**body["spec"], "suspend": True}}, observed, SETTINGS, NOW)
    assert suspended.delete == [("Job", name)]
    assert suspended.status["phase"] == "Suspended"
    assert condition(suspended.status, "Ready") == ("False", "Suspended")
    assert [e.reason for e in suspended.events] == ["Suspended"]

    observed.controller_jobs = []
    resumed = plan_search(applied(body, suspended), observed, SETTINGS, NOW)
    assert [o["metadata"]["name"] for o in created(resumed, "Job")] == [name]  # same epoch, same config
    assert resumed.status["phase"] == "Running"
    assert [e.reason for e in resumed.events] == ["Resumed"]


def test_new_experts_start_the_next_epoch_seeded_with_the_elite():
    body, observed = started(search())
    body["status"].update(best={"candidate": "c000003", "score": "0.8", "recipe": RECIPE}, round=1, generation=4, evaluations=16)
    grown = {**body, "metadata": {**body["metadata"], "generation": 2},
             "spec": {**body["spec"], "experts": body["spec"]["experts"] + [{"name": "c", "uri": "pvc://m/c"}]}}

    plan = plan_search(grown, observed, SETTINGS, NOW)

    assert plan.delete == [("Job", body["status"]["controllerJob"])]
    assert plan.status["epoch"] == 2 and plan.status["observedGeneration"] == 2
    configmap = created(plan, "ConfigMap")[0]
    document, seeds, offsets = read_epoch_configmap(configmap)
    assert [e["name"] for e in document["spec"]["experts"]] == ["a", "b", "c"]
    assert seeds == [RECIPE]
    assert offsets == {"round": 1, "generation": 4, "evaluations": 16, "failedEvaluations": 0}
    (event,) = plan.events
    assert event.reason == "EpochStarted" and "experts changed (+c)" in event.message and "seeded" in event.message


def test_an_operational_change_replaces_the_controller_within_the_same_epoch():
    body, observed = started(search())
    faster = {**body, "spec": {**body["spec"], "evaluation": {"parallelism": 8}}}

    plan = plan_search(faster, observed, SETTINGS, NOW)

    old = body["status"]["controllerJob"]
    (new_job,) = created(plan, "Job")
    assert plan.delete == [("Job", old)] and new_job["metadata"]["name"] != old
    assert applied(faster, plan)["status"]["epoch"] == 1
    (replaced,) = plan.replace
    assert read_epoch_configmap(replaced)[0]["spec"]["evaluation"]["parallelism"] == 8
    assert [e.reason for e in plan.events] == ["Reconfigured"]


def test_selected_experts_join_and_mismatched_or_deleted_ones_do_not():
    def expert(name, labels, **spec):
        return {"apiVersion": "evomerge.dev/v1alpha1", "kind": "Expert",
                "metadata": {"name": name, "namespace": "ns", "labels": labels}, "spec": {"uri": f"pvc://m/{name}", **spec}}

    body = search(experts=[], expertSelector={"matchLabels": {"family": "tiny"}})
    experts = [
        expert("zeta", {"family": "tiny"}),
        expert("alpha", {"family": "tiny"}, baseModel="pvc://m/base"),
        expert("other-family", {"family": "big"}),
        expert("wrong-base", {"family": "tiny"}, baseModel="pvc://m/another-base"),
        {**expert("going", {"family": "tiny"}), "metadata": {"name": "going", "namespace": "ns", "labels": {"family": "tiny"},
                                                             "deletionTimestamp": NOW}},
    ]

    plan = plan_search(body, SearchObservation(experts=experts), SETTINGS, NOW)

    document = read_epoch_configmap(created(plan, "ConfigMap")[0])[0]
    assert [e["name"] for e in document["spec"]["experts"]] == ["alpha", "zeta"]
    assert "expertSelector" not in document["spec"]


def test_a_spec_the_schema_cannot_catch_degrades_the_search_and_runs_nothing():
    body = search(experts=[], expertSelector={"matchLabels": {"family": "none"}})

    plan = plan_search(body, SearchObservation(), SETTINGS, NOW)

    assert plan.create == []
    assert plan.status["phase"] == "Failed"
    assert condition(plan.status, "Degraded") == ("True", "InvalidSpec")
    assert "at least two experts" in find(plan.status["conditions"], "Degraded")["message"]
    (event,) = plan.events
    assert event.type == "Warning" and event.reason == "InvalidSpec"
    # the same problem again is not announced twice
    assert plan_search(applied(body, plan), SearchObservation(), SETTINGS, NOW).events == []


def test_a_later_epoch_with_a_new_best_publishes_the_next_version():
    body, observed = started(search())
    newer = dict(RECIPE, experts=RECIPE["experts"][::-1])
    body["status"].update(epoch=1, best={"candidate": "c000009", "score": "0.9", "recipe": newer})
    observed.controller_jobs = [job(observed.controller_jobs[0], [{"type": "Complete", "status": "True"}])]
    observed.merged_model = {
        "apiVersion": "evomerge.dev/v1alpha1", "kind": "MergedModel",
        "metadata": {"name": "jp", "namespace": "ns", "annotations": {"evomerge.dev/epoch": "0"},
                     "ownerReferences": [{"uid": "uid-1"}]},
        "spec": {"version": 3, "recipe": RECIPE},
    }

    plan = plan_search(body, observed, SETTINGS, NOW)

    ((kind, name, patch),) = plan.patch
    assert (kind, name) == ("MergedModel", "jp")
    assert patch["spec"]["version"] == 4 and patch["spec"]["outputUri"] == "pvc://out/jp/v4"
    assert patch["metadata"]["annotations"]["evomerge.dev/epoch"] == "1"


def test_a_merged_model_owned_by_someone_else_is_left_alone():
    body, observed = started(search())
    body["status"]["best"] = {"candidate": "c1", "score": "0.5", "recipe": RECIPE}
    observed.controller_jobs = [job(observed.controller_jobs[0], [{"type": "Complete", "status": "True"}])]
    observed.merged_model = {"metadata": {"name": "jp", "ownerReferences": []}, "spec": {"version": 1}}

    plan = plan_search(body, observed, SETTINGS, NOW)

    assert plan.patch == [] and created(plan, "MergedModel") == []
    assert "MergedModelConflict" in [e.reason for e in plan.events]


def test_a_failed_evaluation_job_is_explained_with_its_candidates_and_a_hint():
    from evomerge.k8s.reconcile_search import evaluation_failure

    job = {"metadata": {"name": "jp-e1-c000004-2", "annotations": {"evomerge.dev/candidates": "c000004,c000005"}},
           "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                      "message": "Job was active longer than specified deadline"}]}}

    event = evaluation_failure(job, None)

    assert (event.type, event.reason) == ("Warning", "EvaluationFailed")
    assert "2 candidates: c000004, c000005" in event.message
    assert "longer than specified deadline" in event.message and "raise evaluation.timeoutSeconds" in event.message
    assert "CUDA out of memory" in evaluation_failure(job, "torch.OutOfMemoryError: CUDA out of memory").message


def test_a_failed_search_retries_in_the_same_epoch_when_its_evaluation_settings_change():
    body, observed = started(search())
    observed.controller_jobs = [job(observed.controller_jobs[0], [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}])]
    failed = applied(body, plan_search(body, observed, SETTINGS, NOW))
    more_room = {**failed, "metadata": {**failed["metadata"], "generation": 2},
                 "spec": {**failed["spec"], "evaluation": {"maxFailedEvaluations": 50}}}

    plan = plan_search(more_room, observed, SETTINGS, NOW)

    (retry,) = created(plan, "Job")
    assert retry["metadata"]["name"] != body["status"]["controllerJob"]
    assert applied(more_room, plan)["status"]["epoch"] == 1  # the history goes on: nothing is lost
    assert plan.status["phase"] == "Running" and [e.reason for e in plan.events] == ["Retrying"]
    assert condition(plan.status, "Degraded") == ("False", "AsExpected")


# ---- reading the search again only when the watched body may be stale ----------------------------------
class OneSearchServer:
    """The API server as reconcile sees it: one search whose every write gets a new resourceVersion."""

    def __init__(self, body: dict):
        self.search = {**copy.deepcopy(body), "metadata": {**body["metadata"], "resourceVersion": "10"}}
        self.reads: list[str] = []
        self.version = 10
        self.refuse_creates: ApiError | None = None

    def _bump(self) -> str:
        self.version += 1
        self.search["metadata"]["resourceVersion"] = str(self.version)
        return str(self.version)

    def get(self, kind, namespace, name):
        self.reads.append(kind)
        return copy.deepcopy(self.search) if kind == "MergeSearch" else None

    def list(self, kind, namespace, label_selector=None):
        self.reads.append(kind)
        return []

    def create(self, obj):
        if self.refuse_creates is not None:
            raise self.refuse_creates
        return stored(obj)

    def patch(self, kind, namespace, name, patch, subresource=None):
        if "spec" in patch:
            self.search["spec"].update(patch["spec"])
            self.search["metadata"]["generation"] += 1
        if "status" in patch:
            self.search["status"] = {k: v for k, v in {**(self.search.get("status") or {}), **patch["status"]}.items() if v is not None}
        self._bump()
        return copy.deepcopy(self.search)

    def patch_status(self, kind, namespace, name, status):
        return self.patch(kind, namespace, name, {"status": status}, subresource="status")

    def delete(self, kind, namespace, name):
        return True

    def post_event(self, regarding, type_, reason, message, component):
        pass


@pytest.fixture
def server() -> OneSearchServer:
    return OneSearchServer(search())


@pytest.fixture
def state() -> ReconcileState:
    """The operator's memory between reconciles, fresh for each test (the OperatorContext holds one)."""
    return ReconcileState()


def test_the_latest_watched_body_is_reconciled_without_reading_the_search_again(server, state):
    added = copy.deepcopy(server.search)
    state.watched.seen("ADDED", added)

    reconcile_search.reconcile(server, added, SETTINGS, state)

    assert "MergeSearch" not in server.reads
    assert server.search["status"]["observedGeneration"] == 1


def test_a_body_older_than_the_operators_own_status_write_is_read_again(server, state):
    added = copy.deepcopy(server.search)
    state.watched.seen("ADDED", added)
    reconcile_search.reconcile(server, added, SETTINGS, state)
    server.reads.clear()

    again = reconcile_search.reconcile(server, added, SETTINGS, state)  # e.g. queued before the write, its echo not seen yet

    assert server.reads[0] == "MergeSearch"
    assert not again.events, "the fresh read shows epoch 1 started: no second EpochStarted"


def test_once_the_write_came_back_on_the_watch_a_later_edit_is_trusted_as_delivered(server, state):
    added = copy.deepcopy(server.search)
    state.watched.seen("ADDED", added)
    reconcile_search.reconcile(server, added, SETTINGS, state)
    state.watched.seen("MODIFIED", copy.deepcopy(server.search))  # the echo of the status write
    edited = server.patch("MergeSearch", "ns", "jp", {"spec": {"suspend": True}})
    state.watched.seen("MODIFIED", edited)
    server.reads.clear()

    plan = reconcile_search.reconcile(server, edited, SETTINGS, state)

    assert "MergeSearch" not in server.reads
    assert [e.reason for e in plan.events] == ["Suspended"]
    assert server.search["status"]["phase"] == "Suspended"


def test_after_a_refused_reconcile_the_next_one_reads_the_search(server, state):
    added = copy.deepcopy(server.search)
    state.watched.seen("ADDED", added)
    server.refuse_creates = ApiError(403, "Forbidden", 'jobs is forbidden: cannot create resource "jobs" in API group "batch"')
    with pytest.raises(ApiError):
        reconcile_search.reconcile(server, added, SETTINGS, state)
    assert server.search["status"]["conditions"], "the refusal is recorded on the status"
    server.refuse_creates = None
    state.watched.seen("MODIFIED", copy.deepcopy(server.search))  # which write it was, reconcile cannot tell
    server.reads.clear()

    reconcile_search.reconcile(server, copy.deepcopy(server.search), SETTINGS, state)

    assert server.reads[0] == "MergeSearch"
