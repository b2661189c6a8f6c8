"""The chart installed on a real API server, and a whole epoch run under its RBAC alone: the operator as
the chart's ServiceAccount, the controller as the account the operator binds. Least privilege that is too
little fails here; too much is caught by the access reviews at the end."""

from __future__ import annotations

import threading

from kubernetes import client as k8s

from evomerge.k8s import operator_main
from evomerge.k8s.client import Kube
from evomerge.k8s.settings import ClusterSettings
from test_operator import Node, eventually, search_body, status_of, climbable_score


def test_a_whole_epoch_runs_under_the_charts_rbac(control_plane, api_client, namespace, chart_release, tmp_path_factory):
    from tests.support.tiny_models import build_family

    name, release_namespace = chart_release
    admin = Kube.connect(str(control_plane.kubeconfig))
    operator_kubeconfig = control_plane.service_account_kubeconfig(release_namespace, f"{name}-evomerge-operator")
    (deployment,) = admin.list("Deployment", release_namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    settings = ClusterSettings.from_env({e["name"]: e.get("value", "") for e in container["env"]})  # as the kubelet reads the chart's env: the API server drops an empty value
    stop, ready = threading.Event(), threading.Event()
    operator = threading.Thread(target=operator_main.run, daemon=True, kwargs=dict(
        namespaces=[namespace], kubeconfig=str(operator_kubeconfig), metrics_port=None, liveness=None,
        resync_seconds=5.0, stop_flag=stop, ready_flag=ready, settings=settings))
    family = build_family(tmp_path_factory.mktemp("family"))
    node = None
    try:
        operator.start()
        assert ready.wait(60)
        body = search_body("jp", namespace, family)
        admin.create(body)
        # The operator, as the chart's account, made the controller's account and bound it.
        eventually(lambda: admin.get("RoleBinding", namespace, "evomerge-controller"), "the controller's RoleBinding")
        controller_kubeconfig = control_plane.service_account_kubeconfig(namespace, "evomerge-controller")
        node = Node(admin, namespace, climbable_score, controller_kube=Kube.connect(str(controller_kubeconfig)))
        node.start()

        status = eventually(lambda: status_of(admin, namespace, "jp").get("phase") == "Succeeded" and status_of(admin, namespace, "jp"),
                            "the search to succeed under the chart's RBAC", timeout=90)
        assert status["evaluations"] == 6 and status["best"]["recipe"]
    finally:
        if node is not None:
            node.stop()
        stop.set()
        operator.join(30)

    authorization = k8s.AuthorizationV1Api(api_client)

    def allowed(user_namespace: str, account: str, verb: str, resource: str, group: str = "", subresource: str = "") -> bool:
        review = k8s.V1SubjectAccessReview(spec=k8s.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{user_namespace}:{account}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{user_namespace}"],
            resource_attributes=k8s.V1ResourceAttributes(namespace=namespace, verb=verb, resource=resource, group=group,
                                                         subresource=subresource)))
        return authorization.create_subject_access_review(review).status.allowed

    operator_account = f"{name}-evomerge-operator"
    assert allowed(release_namespace, operator_account, "patch", "mergesearches", "evomerge.dev", "status")
    assert not allowed(release_namespace, operator_account, "get", "secrets")
    assert not allowed(release_namespace, operator_account, "delete", "mergesearches", "evomerge.dev")
    assert not allowed(release_namespace, operator_account, "create", "pods")
    assert allowed(namespace, "evomerge-controller", "create", "jobs", "batch")
    # It deletes an evaluation Job whose pod cannot start (evaluation_jobs.EvaluationJobs._fail_stuck).
    assert allowed(namespace, "evomerge-controller", "delete", "jobs", "batch")
    assert not allowed(namespace, "evomerge-controller", "delete", "pods")
    assert not allowed(namespace, "evomerge-controller", "delete", "configmaps")
    assert allowed(namespace, "evomerge-controller", "create", "events")  # a report it could not write
    assert not allowed(namespace, "evomerge-controller", "update", "mergesearches", "evomerge.dev")
    assert not allowed(namespace, "evomerge-evaluation", "get", "configmaps")
