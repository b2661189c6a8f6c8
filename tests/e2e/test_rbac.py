"""RBAC as the chart sets it up: the chain ran with the chart's ServiceAccount for the operator and the
account the operator bound for controllers, and each is refused what it has no business doing."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config

from .helpers import GROUP_VERSION


def can_i(kubeconfig: str, *args: str) -> bool:
    """`kubectl auth can-i` as the holder of `kubeconfig` (a SelfSubjectAccessReview)."""
    result = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "auth", "can-i", *args], capture_output=True, text=True,
                            env={**os.environ, "KUBECONFIG": kubeconfig}, timeout=60)
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def operator_kubeconfig(operator) -> str:
    """The kubeconfig the node gave the running operator: its pod's own ServiceAccount token."""
    return operator.record().containers["operator"].env["KUBECONFIG"]


def test_the_chain_ran_as_the_charts_service_account_not_as_admin(chain, operator_kubeconfig, release, node):
    assert all(run.status["phase"] == "Succeeded" for run in chain.values())
    with config.new_client_from_config(config_file=operator_kubeconfig) as api:
        review = k8s.AuthenticationV1Api(api).create_self_subject_review(k8s.V1SelfSubjectReview())
    assert review.status.user_info.username == f"system:serviceaccount:{release.namespace}:{release.operator_account}"
    for record in node.pods(lambda r: any(c.credentials for c in r.containers.values())):
        for container in record.containers.values():
            if container.credentials:  # every credential handed out is a pod-bound token, never a client certificate
                (user,) = yaml.safe_load(open(container.env["KUBECONFIG"]))["users"]
                assert set(user["user"]) == {"tokenFile"}


ALL = "--all-namespaces"


@pytest.mark.parametrize("question", [
    ("watch", "mergesearches.evomerge.dev", ALL),
    ("patch", "mergesearches.evomerge.dev", "--subresource=status", ALL),
    ("patch", "mergedmodels.evomerge.dev", "--subresource=status", ALL),
    ("create", "jobs.batch", ALL),
    ("create", "mergedmodels.evomerge.dev", ALL),
    ("bind", "clusterroles.rbac.authorization.k8s.io/{controller_role}"),  # resource/name: that role only
], ids=" ".join)
def test_the_operator_may_do_its_work(operator_kubeconfig, release, question):
    assert can_i(operator_kubeconfig, *(part.format(controller_role=release.controller_role) for part in question))


@pytest.mark.parametrize("question", [
    ("get", "secrets", ALL),
    ("list", "secrets", ALL),
    ("list", "nodes"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "pods", ALL),
    ("delete", "pods", ALL),
    ("create", "pods", "--subresource=exec", ALL),
    ("update", "mergesearches.evomerge.dev", ALL),
    ("delete", "mergesearches.evomerge.dev", ALL),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("impersonate", "serviceaccounts", ALL),
    ("create", "serviceaccounts", "--subresource=token", ALL),
], ids=" ".join)
def test_the_operator_is_refused_what_it_has_no_business_doing(operator_kubeconfig, question):
    assert not can_i(operator_kubeconfig, *question)


def test_the_operator_cannot_grant_itself_more_than_the_controller_role(operator_kubeconfig, chain):
    """Binding cluster-admin is refused by the API server itself (RBAC escalation check), not just reviewed."""
    namespace = chain["evogm"].namespace
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "grab-cluster-admin", "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "ServiceAccount", "name": "evomerge-controller", "namespace": namespace}]}
    with config.new_client_from_config(config_file=operator_kubeconfig) as api:
        with pytest.raises(k8s.ApiException) as refused:
            k8s.RbacAuthorizationV1Api(api).create_namespaced_role_binding(namespace, binding)
    assert refused.value.status == 403


def review(api_client, account: str, namespace: str, verb: str, resource: str, group: str = "",
           subresource: str = "", in_namespace: str | None = None) -> bool:
    """A SubjectAccessReview for a ServiceAccount of `namespace` acting in `in_namespace` (default: its own)."""
    spec = k8s.V1SubjectAccessReviewSpec(
        user=f"system:serviceaccount:{namespace}:{account}",
        groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
        resource_attributes=k8s.V1ResourceAttributes(namespace=in_namespace or namespace, verb=verb, resource=resource,
                                                     group=group, subresource=subresource))
    return k8s.AuthorizationV1Api(api_client).create_subject_access_review(k8s.V1SubjectAccessReview(spec=spec)).status.allowed


def test_controller_and_evaluation_accounts_have_only_what_their_pods_need(chain, api_client, namespace):
    search_namespace = chain["evogm"].namespace
    group = GROUP_VERSION.split("/")[0]

    def controller(*args, **kwargs) -> bool:
        return review(api_client, "evomerge-controller", search_namespace, *args, **kwargs)

    def evaluation(*args, **kwargs) -> bool:
        return review(api_client, "evomerge-evaluation", search_namespace, *args, **kwargs)

    assert controller("get", "mergesearches", group) and controller("patch", "mergesearches", group, "status")
    assert controller("create", "jobs", "batch") and controller("patch", "configmaps")
    assert not controller("update", "mergesearches", group)  # the spec is the user's
    assert controller("delete", "jobs", "batch")  # an evaluation Job whose pod cannot start (EvaluationJobs._fail_stuck)
    assert not controller("delete", "configmaps") and not controller("delete", "pods")
    assert not controller("get", "secrets") and not controller("create", "pods")
    assert not controller("create", "jobs", "batch", in_namespace=namespace)  # its own namespace only
    for verb, resource, grp in (("get", "configmaps", ""), ("get", "mergesearches", group), ("list", "pods", ""),
                                ("create", "jobs", "batch"), ("get", "secrets", "")):
        assert not evaluation(verb, resource, grp)
    accounts = {a["metadata"]["name"]: a for a in [k8s.ApiClient().sanitize_for_serialization(a)
                                                   for a in k8s.CoreV1Api(api_client).list_namespaced_service_account(search_namespace).items]}
    assert accounts["evomerge-evaluation"]["automountServiceAccountToken"] is False
