"""The test control plane is a real cluster: storage, CRD validation and the status subresource,
controllers that create and garbage-collect pods, RBAC, and a working helm."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from kubernetes import client

GROUP = "test.evomerge.dev"
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "maxSize": {"type": "integer"},
                        },
                        "x-kubernetes-validations": [
                            {"rule": "!has(self.maxSize) || self.size <= self.maxSize",
                             "message": "size must not exceed maxSize"},
                        ],
                    },
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                },
            }},
        }],
    },
}


def eventually(check, *, timeout: float = 30.0, what: str):
    """Returns the first truthy `check()`; the controllers act asynchronously."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def test_configmap_round_trip(api_client, namespace):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="recipe"), data={"method": "dare_ties"},
    ))

    stored = core.read_namespaced_config_map("recipe", namespace)

    assert stored.data == {"method": "dare_ties"}
    assert stored.metadata.uid and stored.metadata.resource_version


@pytest.fixture
def widgets(api_client):
    extensions = client.ApiextensionsV1Api(api_client)
    extensions.create_custom_resource_definition(WIDGET_CRD)

    def established():
        crd = extensions.read_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

    eventually(established, what="the Widget CRD to be established")
    yield client.CustomObjectsApi(api_client)
    extensions.delete_custom_resource_definition(WIDGET_CRD["metadata"]["name"])


def test_crd_status_subresource_and_validation(widgets, namespace):
    def widget(name, **spec):
        return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}

    created = eventually(
        # Discovery of a just-established CRD can lag a moment behind its condition.
        lambda: _create_or_none(widgets, namespace, widget("w", size=2)), timeout=10,
        what="the first Widget to be accepted",
    )
    patched = widgets.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, "widgets", "w", {"status": {"phase": "Running"}}
    )
    assert patched["status"] == {"phase": "Running"}
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]

    # Through the main resource, status is ignored: only the /status subresource writes it.
    spec_patched = widgets.patch_namespaced_custom_object(
        GROUP, "v1", namespace, "widgets", "w", {"spec": {"size": 3}, "status": {"phase": "Hacked"}}
    )
    assert spec_patched["status"] == {"phase": "Running"}
    assert spec_patched["metadata"]["generation"] == created["metadata"]["generation"] + 1

    for invalid, message in [
        (widget("bad-type", size="two"), "spec.size"),
        (widget("bad-minimum", size=0), "spec.size"),
        (widget("bad-cel", size=5, maxSize=4), "size must not exceed maxSize"),
    ]:
        with pytest.raises(client.ApiException) as raised:
            widgets.create_namespaced_custom_object(GROUP, "v1", namespace, "widgets", invalid)
        assert raised.value.status == 422, raised.value.body
        assert message in raised.value.body


def _create_or_none(widgets, namespace, body):
    try:
        return widgets.create_namespaced_custom_object(GROUP, "v1", namespace, "widgets", body)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def test_job_controller_creates_pod_and_gc_deletes_it(api_client, namespace):
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    job = batch.create_namespaced_job(namespace, client.V1Job(
        metadata=client.V1ObjectMeta(name="evaluate"),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
                restart_policy="Never",
                # A native sidecar (init container that restarts Always), as evaluation pods use.
                init_containers=[client.V1Container(name="server", image="evomerge-server:test", restart_policy="Always")],
                containers=[client.V1Container(name="score", image="evomerge-worker:test", command=["true"])],
            )),
        ),
    ))
    selector = f"batch.kubernetes.io/job-name={job.metadata.name}"

    pods = eventually(lambda: core.list_namespaced_pod(namespace, label_selector=selector).items,
                      what="kube-controller-manager to create the Job's pod")

    (pod,) = pods
    (owner,) = pod.metadata.owner_references
    assert (owner.kind, owner.uid, owner.controller) == ("Job", job.metadata.uid, True)
    assert pod.status.phase == "Pending"  # no kubelet: nothing runs it
    assert [(c.name, c.restart_policy) for c in pod.spec.init_containers] == [("server", "Always")]

    batch.delete_namespaced_job("evaluate", namespace, propagation_policy="Background")

    eventually(lambda: not core.list_namespaced_pod(namespace, label_selector=selector).items,
               what="the garbage collector to delete the orphaned pod")


def test_service_account_token_is_subject_to_rbac(control_plane, api_client, namespace, tmp_path):
    from kubernetes import config

    core, rbac = client.CoreV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="operator")))
    kubeconfig = control_plane.service_account_kubeconfig(namespace, "operator", path=tmp_path / "sa.kubeconfig")

    with config.new_client_from_config(config_file=str(kubeconfig)) as sa_client:
        as_operator = client.CoreV1Api(sa_client)
        with pytest.raises(client.ApiException) as raised:
            as_operator.list_namespaced_config_map(namespace)
        assert raised.value.status == 403

        rbac.create_namespaced_role(namespace, client.V1Role(
            metadata=client.V1ObjectMeta(name="read-configmaps"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
        ))
        rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="operator-reads-configmaps"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="operator", namespace=namespace)],
        ))

        eventually(lambda: _allowed(lambda: as_operator.list_namespaced_config_map(namespace)),
                   timeout=10, what="the RoleBinding to take effect")


def _allowed(call) -> bool:
    try:
        call()
        return True
    except client.ApiException as error:
        if error.status == 403:
            return False
        raise


def test_helm_runs_against_the_cluster(control_plane, control_plane_bin_dir, tmp_path):
    env = {
        **os.environ,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "HELM_CACHE_HOME": str(tmp_path / "cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "config"),
        "HELM_DATA_HOME": str(tmp_path / "data"),
    }
    helm = str(control_plane_bin_dir / "helm")

    version = subprocess.run([helm, "version", "--short"], env=env, capture_output=True, text=True, check=True)
    releases = subprocess.run([helm, "list", "--all-namespaces"], env=env, capture_output=True, text=True)

    assert version.stdout.startswith("v3.")
    assert releases.returncode == 0, releases.stderr
    assert releases.stdout.split()[:2] == ["NAME", "NAMESPACE"]
