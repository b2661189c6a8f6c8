"""The chart renders with the built helm and the API server accepts every object (server-side dry run),
with its default values and with every optional feature turned on."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from kubernetes import client as k8s

from .conftest import CHART
from .helpers import eventually

# A stand-in for the Prometheus operator's CRD, so the API server knows ServiceMonitor (as where it is installed).
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"plural": "servicemonitors", "singular": "servicemonitor", "kind": "ServiceMonitor", "listKind": "ServiceMonitorList"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}],
    },
}
EVERYTHING_ON = {
    "watchNamespaces": ["chart-team-a", "chart-team-b"],
    "imagePullSecrets": [{"name": "registry"}],
    "image": {"tag": "0.1.0-rc1", "pullPolicy": "Always"},
    "workerImage": {"tag": "0.1.0-rc1"},
    "operator": {"nodeSelector": {"kubernetes.io/os": "linux"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                 "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                     {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
                 "podAnnotations": {"example.com/audit": "true"}, "podLabels": {"team": "ml"}},
    "modelCache": {"create": True, "storageClassName": "fast", "size": "10Gi"},
    "serviceAccount": {"annotations": {"iam.example.com/role": "evomerge"}},
    "metrics": {"service": {"enabled": True, "type": "ClusterIP"},
                "serviceMonitor": {"enabled": True, "additionalLabels": {"release": "prometheus"}},
                "grafanaDashboard": {"enabled": True}},
}


def dry_run(control_plane, manifests: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--kubeconfig", str(control_plane.kubeconfig), "apply", "--dry-run=server", "-f", "-"],
                          input=manifests,
                          capture_output=True, text=True, timeout=120)


def test_the_default_chart_renders_and_the_api_server_accepts_it(helm, control_plane, release):
    rendered = helm("template", "evo-defaults", str(CHART), "--namespace", release.namespace, "--include-crds")
    assert rendered.returncode == 0, rendered.stderr
    kinds = sorted({d["kind"] for d in yaml.safe_load_all(rendered.stdout) if d})

    applied = dry_run(control_plane, rendered.stdout)

    assert applied.returncode == 0, applied.stderr
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "Service", "ServiceAccount"]
    assert applied.stdout.count("(server dry run)") == len([d for d in yaml.safe_load_all(rendered.stdout) if d])


@pytest.fixture
def monitoring_and_team_namespaces(api_client):
    extensions, core = k8s.ApiextensionsV1Api(api_client), k8s.CoreV1Api(api_client)
    extensions.create_custom_resource_definition(SERVICE_MONITOR_CRD)
    for name in EVERYTHING_ON["watchNamespaces"]:
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))

    def established() -> bool:
        crd = extensions.read_custom_resource_definition(SERVICE_MONITOR_CRD["metadata"]["name"])
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

    eventually(established, "the ServiceMonitor CRD")
    yield
    for name in EVERYTHING_ON["watchNamespaces"]:
        core.delete_namespace(name)
    extensions.delete_custom_resource_definition(SERVICE_MONITOR_CRD["metadata"]["name"])


def test_every_optional_feature_renders_and_the_api_server_accepts_it(helm, control_plane, release, tmp_path,
                                                                      monitoring_and_team_namespaces):
    values = tmp_path / "everything-on.yaml"
    values.write_text(yaml.safe_dump(EVERYTHING_ON))
    rendered = helm("template", "evo-all", str(CHART), "--namespace", release.namespace, "--include-crds", "-f", str(values),
                    "--api-versions", "monitoring.coreos.com/v1")
    assert rendered.returncode == 0, rendered.stderr
    objects = [d for d in yaml.safe_load_all(rendered.stdout) if d]

    applied = dry_run(control_plane, rendered.stdout)

    assert applied.returncode == 0, applied.stderr
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    assert {o["metadata"]["namespace"] for o in by_kind["Role"]} == set(EVERYTHING_ON["watchNamespaces"])
    assert {o["metadata"]["namespace"] for o in by_kind["PersistentVolumeClaim"]} == set(EVERYTHING_ON["watchNamespaces"])
    assert "ClusterRoleBinding" not in by_kind or all("operator" not in o["metadata"]["name"] for o in by_kind["ClusterRoleBinding"])
    (monitor,) = by_kind["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert any("evomerge.json" in (o.get("data") or {}) for o in by_kind["ConfigMap"])
    (deployment,) = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry"}] and pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert [a for a in pod["containers"][0]["args"] if a.startswith("--namespace")] == [
        f"--namespace={n}" for n in EVERYTHING_ON["watchNamespaces"]]
    assert applied.stdout.count("(server dry run)") == len(objects)
