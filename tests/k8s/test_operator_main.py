"""The operator process: requests the API server refuses reach the user on the object, and its resync survives
what a pass may throw. Against a real API server, with the chart's RBAC and a ResourceQuota taken away and
given back while the operator runs as the chart's ServiceAccount."""

from __future__ import annotations

import re
import threading
import urllib.request

import kopf
from kubernetes import client as k8s

from evomerge.k8s import operator_main
from evomerge.k8s.client import Kube
from evomerge.k8s.metrics import OperatorMetrics
from evomerge.k8s.plan import Event, EventQueue
from evomerge.k8s.settings import ClusterSettings
from test_operator import condition, eventually, search_body, status_of
from tests.support.ports import free_port


def _operator_role(rbac: k8s.RbacAuthorizationV1Api, namespace: str, release: str) -> k8s.V1Role:
    return rbac.read_namespaced_role(f"{release}-evomerge-operator", namespace)


def _set_job_verbs(rbac: k8s.RbacAuthorizationV1Api, namespace: str, release: str, verbs: list[str]) -> None:
    role = _operator_role(rbac, namespace, release)
    for rule in role.rules:
        if rule.resources == ["jobs"]:
            rule.verbs = verbs
    rbac.replace_namespaced_role(role.metadata.name, namespace, role)


def _warnings(kube: Kube, namespace: str, name: str) -> list[dict]:
    return [e for e in kube.list("Event", namespace) if e["involvedObject"]["name"] == name and e["type"] == "Warning"]


def _failed_reconciles(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = re.search(r'^evomerge_reconcile_errors_total\{kind="MergeSearch"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_refused_requests_degrade_the_search_once_per_reason_and_clear_when_fixed(control_plane, api_client, namespace, chart_release):
    release, release_namespace = chart_release
    admin = Kube.connect(str(control_plane.kubeconfig))
    core, rbac = k8s.CoreV1Api(api_client), k8s.RbacAuthorizationV1Api(api_client)
    job_verbs = next(rule.verbs for rule in _operator_role(rbac, namespace, release).rules if rule.resources == ["jobs"])
    _set_job_verbs(rbac, namespace, release, [v for v in job_verbs if v != "create"])
    core.create_namespaced_resource_quota(namespace, k8s.V1ResourceQuota(
        metadata=k8s.V1ObjectMeta(name="no-jobs"), spec=k8s.V1ResourceQuotaSpec(hard={"count/jobs.batch": "0"})))
    eventually(lambda: core.read_namespaced_resource_quota("no-jobs", namespace).status.hard, "the quota to be counted")
    kubeconfig = control_plane.service_account_kubeconfig(release_namespace, f"{release}-evomerge-operator")
    (deployment,) = admin.list("Deployment", release_namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    settings = ClusterSettings.from_env({e["name"]: e.get("value", "") for e in container["env"]})  # as the kubelet reads the chart's env: the API server drops an empty value
    stop, ready, port = threading.Event(), threading.Event(), free_port()
    operator = threading.Thread(target=operator_main.run, daemon=True, kwargs=dict(
        namespaces=[namespace], kubeconfig=str(kubeconfig), metrics_port=port, liveness=None, resync_seconds=0.5,
        stop_flag=stop, ready_flag=ready, settings=settings))
    try:
        operator.start()
        assert ready.wait(60), "the operator did not start"
        admin.create(search_body("jp", namespace))

        # RBAC is checked before the quota: the missing verb is what the user hears of first.
        degraded = eventually(lambda: condition(status_of(admin, namespace, "jp"), "Degraded").get("reason") == "Forbidden"
                              and condition(status_of(admin, namespace, "jp"), "Degraded"), "the search to be Degraded: Forbidden")
        assert degraded["status"] == "True" and degraded["observedGeneration"] == 1
        assert re.search(rf"refused to create Job {namespace}/jp-controller-e1-\w+: jobs.batch is forbidden: ", degraded["message"])
        assert "lacks verb create on resource jobs in apiGroup batch" in degraded["message"]
        assert "observedGeneration" not in status_of(admin, namespace, "jp")  # generation 1 has not been reconciled
        failures = _failed_reconciles(port)
        eventually(lambda: _failed_reconciles(port) >= failures + 4, "four more resyncs to fail")
        (warning,) = _warnings(admin, namespace, "jp")  # one Warning, not one per resync
        assert (warning["reason"], warning["message"]) == ("Forbidden", degraded["message"])

        _set_job_verbs(rbac, namespace, release, job_verbs)
        quota = eventually(lambda: condition(status_of(admin, namespace, "jp"), "Degraded").get("reason") == "QuotaExceeded"
                           and condition(status_of(admin, namespace, "jp"), "Degraded"), "the search to be Degraded: QuotaExceeded")
        assert "exceeded quota: no-jobs" in quota["message"]
        assert quota["message"].endswith(f"raise ResourceQuota no-jobs in namespace {namespace}, or lower "
                                         "spec.evaluation.parallelism or spec.evaluation.resources")
        assert quota["lastTransitionTime"] == degraded["lastTransitionTime"]  # still Degraded, for another reason

        core.delete_namespaced_resource_quota("no-jobs", namespace)
        status = eventually(lambda: status_of(admin, namespace, "jp").get("phase") == "Running" and status_of(admin, namespace, "jp"),
                            "the search to run once nothing refuses it")
        assert (condition(status, "Degraded")["status"], condition(status, "Degraded")["reason"]) == ("False", "AsExpected")
        assert condition(status, "Progressing")["status"] == "True" and status["observedGeneration"] == 1
        assert [j["metadata"]["name"] for j in admin.list("Job", namespace)] == [status["controllerJob"]]
        assert sorted(w["reason"] for w in _warnings(admin, namespace, "jp")) == ["Forbidden", "QuotaExceeded"]
    finally:
        stop.set()
        operator.join(30)
        admin.close()
    assert not operator.is_alive(), "the operator did not stop"


class _FlakyKube:
    """Lists time out once (as urllib3 raises, not an ApiError), then answer."""

    def __init__(self) -> None:
        self.calls = 0
        self.answered = threading.Event()

    def list(self, kind, namespace, label_selector=None):
        self.calls += 1
        if self.calls == 1:
            raise TimeoutError("read timed out")
        self.answered.set()
        return []


def test_a_resync_pass_that_times_out_is_retried_by_the_next_pass():
    kube = _FlakyKube()
    context = operator_main.OperatorContext(kube, ClusterSettings(), OperatorMetrics(), events=None, resync_seconds=0.01)

    thread = operator_main.start_resync(context)
    try:
        assert kube.answered.wait(10), "no resync pass ran after the one that timed out"
    finally:
        context.stop.set()
        thread.join(10)
    assert not thread.is_alive()


class _PostingKube:
    def __init__(self) -> None:
        self.posted = threading.Event()

    def post_event(self, regarding, type_, reason, message, component):
        self.posted.set()


SEARCH = {"apiVersion": "evomerge.dev/v1alpha1", "kind": "MergeSearch", "metadata": {"name": "jp", "namespace": "ns", "uid": "u"}}


def test_events_wait_while_a_burst_of_reconciles_is_in_flight_and_go_out_when_it_passed():
    kube = _PostingKube()
    events = EventQueue(kube, "evomerge-operator", patience=60, burst=2)
    try:
        with events.deferring():
            with events.deferring():
                events.put(SEARCH, Event("Normal", "EpochStarted", "epoch 1"))
                assert not kube.posted.wait(0.5), "an Event went out during a burst of reconciles"
            assert kube.posted.wait(10), "the Event was held back after the burst passed"
    finally:
        events.close()


def test_an_event_goes_out_at_once_beside_a_few_reconciles_and_out_of_patience_during_a_burst():
    calm, busy = _PostingKube(), _PostingKube()
    beside = EventQueue(calm, "evomerge-operator", patience=60, burst=2)
    impatient = EventQueue(busy, "evomerge-operator", patience=0.0, burst=1)
    try:
        with beside.deferring(), impatient.deferring():
            beside.put(SEARCH, Event("Normal", "EpochStarted", "epoch 1"))
            impatient.put(SEARCH, Event("Normal", "EpochStarted", "epoch 1"))
            assert calm.posted.wait(10), "one reconcile in flight held an Event back"
            assert busy.posted.wait(10), "a steady burst of reconciles held an Event back for good"
    finally:
        beside.close()
        impatient.close()


def test_only_experts_keep_a_diff_base_the_rest_skip_kopfs_copy_of_every_body():
    storage = operator_main.ExpertDiffBase(prefix="evomerge.dev", key="last-handled-configuration")
    expert = {"apiVersion": "evomerge.dev/v1alpha1", "kind": "Expert", "metadata": {"name": "a", "labels": {"lang": "ja"}},
              "spec": {"uri": "pvc://m/a"}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "labels": {"x": "y"}}, "spec": {"parallelism": 1}}

    assert storage.build(body=kopf.Body(expert)) == {"metadata": {"labels": {"lang": "ja"}}, "spec": {"uri": "pvc://m/a"}}
    assert storage.build(body=kopf.Body(job)) == {}
    assert storage.build(body=kopf.Body({**SEARCH, "spec": {"suspend": True}})) == {}
