"""Refusals of the API server: which are the user's to fix, what the object then says, and when it clears.

The RBAC, quota and validation messages are those the test control plane's kube-apiserver sends.
"""

from __future__ import annotations

import pytest

from evomerge.k8s.api_failures import (
    API_ERROR,
    FORBIDDEN,
    QUOTA_EXCEEDED,
    REJECTED,
    RefusedRequest,
    Request,
    classify,
    clear_refusal,
    degraded_status,
    is_news,
    requesting,
)
from evomerge.k8s.client import ApiError, Conflict, Invalid, NotFound
from evomerge.k8s.conditions import condition, find, merge_conditions
from evomerge.k8s.plan import record_refusal
from evomerge.k8s.reconcile_model import ModelObservation, plan_model
from evomerge.k8s.reconcile_search import SearchObservation, plan_search
from evomerge.k8s.reconcile_state import ReconcileState
from evomerge.k8s.settings import ClusterSettings

NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
USER = 'User "system:serviceaccount:evomerge-system:evomerge-operator"'
RBAC_CREATE_JOB = f'jobs.batch is forbidden: {USER} cannot create resource "jobs" in API group "batch" in the namespace "ns"'
RBAC_LIST_PODS = f'pods is forbidden: {USER} cannot list resource "pods" in API group "" in the namespace "ns"'
QUOTA = ('jobs.batch "jp-e1-controller" is forbidden: exceeded quota: no-jobs, requested: count/jobs.batch=1, '
         'used: count/jobs.batch=0, limited: count/jobs.batch=0')
INVALID = 'Job.batch "jp-e1-controller" is invalid: spec.template.spec.containers[0].image: Required value'
WEBHOOK = 'admission webhook "gpu-policy.example.com" denied the request: jobs may not ask for nvidia.com/gpu here'
ESCALATION = ('rolebindings.rbac.authorization.k8s.io "evomerge-controller" is forbidden: user "op" (groups=["a"]) is '
              'attempting to grant RBAC permissions not currently held: {APIGroups:["batch"], Resources:["jobs"], Verbs:["create"]}')
CREATE_JOB = Request("create", "Job", "ns", "jp-e1-controller")


def refused(request: Request | None, status: int, reason: str, message: str) -> ApiError:
    error = {404: NotFound, 409: Conflict, 422: Invalid}.get(status, ApiError)(status, reason, message)
    return error if request is None else RefusedRequest(request, error)


# ---- classification -----------------------------------------------------------------------------------------
def test_a_missing_rbac_verb_names_the_request_the_servers_words_and_the_chart_role():
    refusal = classify(refused(CREATE_JOB, 403, "Forbidden", RBAC_CREATE_JOB), "MergeSearch")

    assert refusal.reason == FORBIDDEN
    assert refusal.message.startswith(f"the API server refused to create Job ns/jp-e1-controller: {RBAC_CREATE_JOB} — ")
    assert "lacks verb create on resource jobs in apiGroup batch" in refusal.message
    assert "charts/evomerge/templates/rbac.yaml" in refusal.message


def test_a_refused_read_is_named_from_the_rbac_message():
    refusal = classify(refused(None, 403, "Forbidden", RBAC_LIST_PODS), "MergeSearch")

    assert refusal.reason == FORBIDDEN
    assert refusal.message.startswith("the API server refused to list pods: pods is forbidden")
    assert 'lacks verb list on resource pods in apiGroup "" (core)' in refusal.message


def test_binding_a_role_the_operator_may_not_bind_is_forbidden_with_the_binding_hint():
    request = Request("create", "RoleBinding", "ns", "evomerge-controller")
    refusal = classify(refused(request, 403, "Forbidden", ESCALATION), "MergeSearch")

    assert refusal.reason == FORBIDDEN and "holds `bind` on" in refusal.message


@pytest.mark.parametrize("kind, hint", [
    ("MergeSearch", "lower spec.evaluation.parallelism or spec.evaluation.resources"),
    ("MergedModel", "lower spec.serving.replicas or spec.serving.resources"),
])
def test_an_exceeded_quota_names_the_quota_and_what_to_ask_for_less_of(kind, hint):
    refusal = classify(refused(CREATE_JOB, 403, "Forbidden", QUOTA), kind)

    assert refusal.reason == QUOTA_EXCEEDED
    assert "limited: count/jobs.batch=0" in refusal.message
    assert refusal.message.endswith(f"— raise ResourceQuota no-jobs in namespace ns, or {hint}")


@pytest.mark.parametrize("status, reason, message", [
    (422, "Invalid", INVALID),
    (400, "BadRequest", WEBHOOK),
    (403, "Forbidden", WEBHOOK),
])
def test_invalid_objects_and_admission_denials_are_rejected_with_the_servers_words(status, reason, message):
    refusal = classify(refused(CREATE_JOB, status, reason, message), "MergeSearch")

    assert refusal.reason == REJECTED
    assert f"create Job ns/jp-e1-controller: {message} — change what the message names" in refusal.message


def test_a_create_refused_as_not_found_is_the_users_to_fix():
    request = Request("create", "RoleBinding", "ns", "evomerge-controller")
    refusal = classify(refused(request, 404, "NotFound", 'clusterroles.rbac.authorization.k8s.io "evomerge-controller" not found'),
                       "MergeSearch")

    assert refusal.reason == REJECTED and "EVOMERGE_CONTROLLER_CLUSTER_ROLE" in refusal.message


def test_other_lasting_errors_are_api_errors():
    assert classify(refused(CREATE_JOB, 401, "Unauthorized", "Unauthorized"), "MergeSearch").reason == API_ERROR


@pytest.mark.parametrize("request_, status, reason, message", [
    (CREATE_JOB, 409, "AlreadyExists", 'jobs.batch "jp-e1-controller" already exists'),
    (Request("update", "ConfigMap", "ns", "jp-e1"), 409, "Conflict", "the object has been modified"),
    (None, 410, "Expired", "too old resource version"),
    (CREATE_JOB, 429, "TooManyRequests", "the server has received too many requests"),
    (CREATE_JOB, 500, "InternalError", "Internal error occurred: etcdserver: request timed out"),
    (CREATE_JOB, 503, "ServiceUnavailable", 'failed calling webhook "x": connection refused'),
    (None, 0, "0", "connection reset by peer"),
    (Request("patch", "MergeSearch", "ns", "jp", "status"), 404, "NotFound", 'mergesearches "jp" not found'),
    (CREATE_JOB, 403, "Forbidden", 'jobs.batch "x" is forbidden: unable to create new content in namespace ns because it is being terminated'),
    (CREATE_JOB, 403, "Forbidden", "status unknown for quota: no-jobs, resources: count/jobs.batch"),
])
def test_transient_failures_stay_silent_retries(request_, status, reason, message):
    assert classify(refused(request_, status, reason, message), "MergeSearch") is None


def test_requesting_names_the_request_and_keeps_the_servers_status():
    with pytest.raises(RefusedRequest) as caught:
        with requesting("patch", "MergeSearch", "ns", "jp", "status"):
            raise Invalid(422, "Invalid", "status.phase: Unsupported value")

    error = caught.value
    assert (error.status, error.reason, error.server_message) == (422, "Invalid", "status.phase: Unsupported value")
    assert str(error) == "422 Invalid: patch MergeSearch ns/jp (status): status.phase: Unsupported value"
    with pytest.raises(RefusedRequest) as again:  # an inner request keeps its own name
        with requesting("create", "Job", "ns", "outer"):
            raise error
    assert again.value is error


# ---- the condition ----------------------------------------------------------------------------------------
RUNNING = {"phase": "Running", "observedGeneration": 1, "conditions": merge_conditions([], [
    condition("Ready", False, "Searching", "controller Job jp-e1 is running", 1),
    condition("Progressing", True, "Searching", "controller Job jp-e1 is running", 1),
    condition("Degraded", False, "AsExpected", "", 1)], NOW)}


def forbidden() -> ApiError:
    return refused(CREATE_JOB, 403, "Forbidden", RBAC_CREATE_JOB)


def test_a_refusal_sets_degraded_only_and_leaves_what_the_last_reconcile_saw():
    refusal = classify(forbidden(), "MergeSearch")

    patch = degraded_status(RUNNING, refusal, 2, LATER)

    assert set(patch) == {"conditions"}  # no phase, no top-level observedGeneration: generation 2 was not reconciled
    degraded = find(patch["conditions"], "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["observedGeneration"]) == ("True", FORBIDDEN, 2)
    assert degraded["message"] == refusal.message and degraded["lastTransitionTime"] == LATER
    assert find(patch["conditions"], "Ready") == find(RUNNING["conditions"], "Ready")
    recorded = {**RUNNING, **patch}
    assert degraded_status(recorded, refusal, 2, LATER) is None  # said already: no write on every resync
    assert not is_news(recorded, refusal)
    quota = classify(refused(CREATE_JOB, 403, "Forbidden", QUOTA), "MergeSearch")
    assert is_news(recorded, quota)  # a new reason is worth one more Warning
    assert find(degraded_status(recorded, quota, 2, "later still")["conditions"], "Degraded")["lastTransitionTime"] == LATER


def test_a_reconcile_that_goes_through_clears_a_refusal_even_when_its_plan_sets_no_conditions():
    recorded = {**RUNNING, **degraded_status(RUNNING, classify(forbidden(), "MergeSearch"), 1, NOW)}
    plan_status = {"endpoint": "http://jp-serving.ns.svc"}

    clear_refusal(plan_status, recorded, 1, LATER)

    degraded = find(plan_status["conditions"], "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["lastTransitionTime"]) == ("False", "AsExpected", LATER)
    failed = {"conditions": [condition("Degraded", True, "ExportFailed", "export Job failed", 1)]}
    untouched: dict = {}
    clear_refusal(untouched, failed, 1, LATER)  # the planner's own Degraded is the planner's to clear
    assert untouched == {}


# ---- the planners and a recorded refusal ------------------------------------------------------------------
SETTINGS = ClusterSettings()
RECIPE = {"method": "task_arithmetic", "baseUri": "pvc://m/base", "groups": ["all"], "options": {},
          "experts": [{"name": "a", "uri": "pvc://m/a", "params": {"weight": {"all": 0.5}}}]}


def served_model(status: dict) -> dict:
    return {"apiVersion": "evomerge.dev/v1alpha1", "kind": "MergedModel",
            "metadata": {"name": "jp", "namespace": "ns", "uid": "mm", "generation": 2},
            "spec": {"search": "jp", "version": 1, "recipe": RECIPE, "outputUri": "pvc://out/jp/v1",
                     "serving": {"enabled": True}},
            "status": status}


def test_a_served_model_whose_deployment_was_refused_is_cleared_once_the_deployment_is_made():
    ready = {"phase": "Ready", "version": 1, "outputUri": "pvc://out/jp/v1", "observedGeneration": 1, "conditions": merge_conditions([], [
        condition("Ready", True, "Exported", "version 1 is at pvc://out/jp/v1", 1),
        condition("Progressing", False, "Exported", "", 1), condition("Degraded", False, "AsExpected", "", 1)], NOW)}
    deployment = Request("create", "Deployment", "ns", "jp-serving")
    refusal = classify(refused(deployment, 403, "Forbidden", RBAC_CREATE_JOB.replace("jobs", "deployments")), "MergedModel")
    recorded = {**ready, **degraded_status(ready, refusal, 2, NOW)}

    plan = plan_model(served_model(recorded), ModelObservation(), SETTINGS, LATER)

    assert [o["kind"] for o in plan.create] == ["Deployment", "Service"]
    assert plan.status["observedGeneration"] == 2
    assert find(plan.status["conditions"], "Degraded")["status"] == "False"
    assert find(plan.status["conditions"], "Ready") == find(ready["conditions"], "Ready")


def search_body(status: dict, **spec) -> dict:
    return {"apiVersion": "evomerge.dev/v1alpha1", "kind": "MergeSearch",
            "metadata": {"name": "jp", "namespace": "ns", "uid": "uid-1", "generation": 1},
            "spec": {"baseModel": {"uri": "pvc://m/base"}, "experts": [{"name": "a", "uri": "pvc://m/a"}, {"name": "b", "uri": "pvc://m/b"}],
                     "objectives": [{"task": "t"}], **spec},
            "status": status}


def reconciled(body: dict, observed: SearchObservation) -> dict:
    plan = plan_search(body, observed, SETTINGS, NOW)
    return {**body, "status": {k: v for k, v in {**body["status"], **plan.status}.items() if v is not None}}


def started_search() -> tuple[dict, dict]:
    """A search after its first reconcile, and its epoch ConfigMap as stored."""
    body = search_body({})
    plan = plan_search(body, SearchObservation(), SETTINGS, NOW)
    (configmap,) = [o for o in plan.create if o["kind"] == "ConfigMap"]
    configmap["metadata"]["resourceVersion"] = "1"
    return {**body, "status": plan.status}, configmap


def test_a_failed_search_keeps_its_own_reason_after_a_refusal_came_and_went():
    started, configmap = started_search()
    failed_job = {"kind": "Job", "metadata": {"name": started["status"]["controllerJob"], "resourceVersion": "1"},
                  "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}
    observed = SearchObservation(controller_jobs=[failed_job], epoch_configmap=configmap)
    failed = reconciled(started, SearchObservation(controller_jobs=[failed_job], epoch_configmap=configmap,
                                                   controller_message="out of memory"))
    assert failed["status"]["phase"] == "Failed"
    refusal = classify(refused(Request("delete", "Job", "ns", "jp-old"), 403, "Forbidden", RBAC_CREATE_JOB), "MergeSearch")
    with_refusal = {**failed, "status": {**failed["status"], **degraded_status(failed["status"], refusal, 1, NOW)}}

    plan = plan_search(with_refusal, observed, SETTINGS, LATER)

    degraded = find(plan.status["conditions"], "Degraded")
    assert plan.status["phase"] == "Failed" and degraded["reason"] == "SearchFailed"
    assert "out of memory" in degraded["message"] and "refused" not in degraded["message"]


def test_a_search_whose_spec_was_invalid_starts_again_once_fixed_even_if_a_refusal_came_between():
    started, configmap = started_search()
    invalid = reconciled({**started, "spec": {**started["spec"], "experts": []}}, SearchObservation(epoch_configmap=configmap))
    assert invalid["status"]["phase"] == "Failed"
    name = invalid["status"]["controllerJob"]
    refusal = classify(refused(Request("delete", "Job", "ns", name), 403, "Forbidden", RBAC_CREATE_JOB), "MergeSearch")
    refused_after = {**invalid, "spec": started["spec"],
                     "status": {**invalid["status"], **degraded_status(invalid["status"], refusal, 1, NOW)}}

    plan = plan_search(refused_after, SearchObservation(epoch_configmap=configmap), SETTINGS, LATER)

    assert plan.status["phase"] == "Running" and [o["kind"] for o in plan.create][-1] == "Job"
    assert find(plan.status["conditions"], "Degraded")["status"] == "False"


# ---- recording it on the object ---------------------------------------------------------------------------
class RecordingKube:
    """The two requests record_refusal sends, with a status patch that may be refused."""

    def __init__(self, patch_error: ApiError | None = None):
        self.patches: list[dict] = []
        self.events: list[tuple[str, str, str]] = []
        self.patch_error = patch_error

    def patch(self, kind, namespace, name, patch, subresource=None):
        assert (kind, namespace, name, subresource) == ("MergeSearch", "ns", "jp", "status")
        if self.patch_error is not None:
            raise self.patch_error
        self.patches.append(patch)
        return patch

    def post_event(self, regarding, type_, reason, message, component):
        self.events.append((type_, reason, message))


def stored_search(status: dict, resource_version: str = "7") -> dict:
    body = search_body(status)
    body["metadata"]["resourceVersion"] = resource_version
    return body


def test_a_refusal_is_recorded_once_with_one_warning_against_the_version_read():
    kube = RecordingKube()

    refusal = record_refusal(kube, stored_search(RUNNING), forbidden(), "evomerge-operator")

    (patch,) = kube.patches
    assert patch["metadata"] == {"resourceVersion": "7"}  # a status changed since is not overwritten
    assert find(patch["status"]["conditions"], "Degraded")["message"] == refusal.message
    assert kube.events == [("Warning", FORBIDDEN, refusal.message)]
    record_refusal(kube, stored_search({**RUNNING, **patch["status"]}, "8"), forbidden(), "evomerge-operator")
    assert len(kube.patches) == 1 and len(kube.events) == 1  # the next resync: said already


def test_transient_failures_and_lost_races_write_nothing():
    kube = RecordingKube()
    assert record_refusal(kube, stored_search(RUNNING), refused(CREATE_JOB, 503, "ServiceUnavailable", "etcd"), "c") is None
    raced = RecordingKube(patch_error=Conflict(409, "Conflict", "the object has been modified"))
    assert record_refusal(raced, stored_search(RUNNING), forbidden(), "c").reason == FORBIDDEN
    assert (kube.patches, kube.events, raced.events) == ([], [], [])


def test_a_status_the_operator_may_not_write_is_logged_and_warned_once_until_a_reconcile_goes_through(caplog):
    said = RBAC_CREATE_JOB.replace('create resource "jobs"', 'patch resource "mergesearches/status"')
    status_refused = RefusedRequest(Request("patch", "MergeSearch", "ns", "jp", "status"), ApiError(403, "Forbidden", said))
    kube = RecordingKube(patch_error=ApiError(403, "Forbidden", "mergesearches/status is forbidden"))
    state = ReconcileState()

    for _ in range(3):
        record_refusal(kube, stored_search(RUNNING), status_refused, "evomerge-operator", state=state)

    assert [reason for _, reason, _ in kube.events] == [FORBIDDEN]
    assert "lacks verb patch on resource mergesearches/status" in kube.events[0][2]
    assert "could not record Forbidden on its status" in caplog.text
    state.settled("uid-1")
    record_refusal(kube, stored_search(RUNNING), status_refused, "evomerge-operator", state=state)
    assert len(kube.events) == 2


def test_a_warning_that_cannot_be_posted_is_logged_not_raised(caplog):
    class NoEvents(RecordingKube):
        def post_event(self, *args):
            raise ApiError(403, "Forbidden", 'events is forbidden: cannot create resource "events"')

    state = ReconcileState()
    assert record_refusal(NoEvents(), stored_search(RUNNING), forbidden(), "c", state=state).reason == FORBIDDEN
    assert "Warning Forbidden on MergeSearch ns/jp not posted" in caplog.text
    assert state.warned_unrecorded == {}
