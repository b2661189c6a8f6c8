"""The Helm chart rendered with `helm template`: one Recreate replica, restricted pods, least-privilege RBAC,
optional monitoring, and a dashboard and Argo CD health check that match what the operator reports."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from evomerge.catalogue.engines import SERVED_ENGINES, server_image
from evomerge.k8s.metrics import OperatorMetrics
from evomerge.k8s.settings import ClusterSettings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "evomerge"


def render(helm: Path, tmp_path: Path, *args: str) -> list[dict]:
    env = {**os.environ, "HELM_CACHE_HOME": str(tmp_path / "c"), "HELM_CONFIG_HOME": str(tmp_path / "f"),
           "HELM_DATA_HOME": str(tmp_path / "d")}
    result = subprocess.run([str(helm), "template", "evo", str(CHART), "--namespace", "evomerge-system", *args],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def test_helm_lint_passes_strictly(helm, tmp_path):
    result = subprocess.run([str(helm), "lint", "--strict", str(CHART)], capture_output=True, text=True,
                            env={**os.environ, "HELM_CACHE_HOME": str(tmp_path), "HELM_CONFIG_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_recreated_restricted_replica_probed_on_kopfs_liveness_endpoint(helm, tmp_path):
    objects = render(helm, tmp_path)

    (deployment,) = by_kind(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                            "readOnlyRootFilesystem": True, "runAsNonRoot": True}
    assert container["args"][0] == "operator"
    assert "--liveness=http://0.0.0.0:8081/healthz" in container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http-metrics": 8080, "health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert not any(a.startswith("--namespace") for a in container["args"])  # every namespace by default


def test_the_operator_env_is_exactly_its_settings(helm, tmp_path):
    objects = render(helm, tmp_path, "--set", "workerImage.tag=1.2.3", "--set", "evaluation.ttlSecondsAfterFinished=60")

    (deployment,) = by_kind(objects, "Deployment")
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    settings = ClusterSettings.from_env(env)  # every variable parses
    assert set(env) <= {e["name"] for e in ClusterSettings().to_env()}
    assert settings.worker_image == "ghcr.io/evomerge/evomerge-worker:1.2.3"
    assert settings.evaluation_ttl_seconds == 60
    controller_roles = [r for r in by_kind(objects, "ClusterRole") if r["metadata"]["name"].endswith("-controller")]
    assert [r["metadata"]["name"] for r in controller_roles] == [settings.controller_cluster_role]


def test_rbac_is_least_privilege_with_status_patch_and_one_bindable_role(helm, tmp_path):
    objects = render(helm, tmp_path)

    roles = {r["metadata"]["name"]: r["rules"] for r in by_kind(objects, "ClusterRole")}
    operator, controller = roles["evo-evomerge-operator"], roles["evo-evomerge-controller"]
    flat = json.dumps(roles)
    assert '"*"' not in flat
    assert {"apiGroups": ["evomerge.dev"], "resources": ["mergesearches/status", "mergedmodels/status", "experts/status"],
            "verbs": ["get", "patch"]} in operator
    assert {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"],
            "resourceNames": ["evo-evomerge-controller"]} in operator
    assert {"apiGroups": ["evomerge.dev"], "resources": ["mergesearches/status"], "verbs": ["patch"]} in controller
    # Its one delete: an evaluation Job whose pod cannot start (evaluation_jobs.EvaluationJobs._fail_stuck).
    assert [(r["apiGroups"], r["resources"]) for r in controller if "delete" in r["verbs"]] == [(["batch"], ["jobs"])]
    (binding,) = by_kind(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "evo-evomerge-operator", "namespace": "evomerge-system"}]


def test_watching_namespaces_uses_a_role_in_each(helm, tmp_path):
    objects = render(helm, tmp_path, "--set", "watchNamespaces={team-a,team-b}")

    roles = by_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert [r["metadata"]["name"] for r in by_kind(objects, "ClusterRole")] == ["evo-evomerge-controller"]
    args = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


def test_service_monitor_only_where_prometheus_operator_exists(helm, tmp_path):
    enabled = ("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.additionalLabels.release=prom")

    assert by_kind(render(helm, tmp_path), "ServiceMonitor") == []
    assert by_kind(render(helm, tmp_path, *enabled), "ServiceMonitor") == []
    (monitor,) = by_kind(render(helm, tmp_path, *enabled, "--api-versions", "monitoring.coreos.com/v1"), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    (service,) = by_kind(render(helm, tmp_path), "Service")
    assert service["spec"]["selector"] == monitor["spec"]["selector"]["matchLabels"]


def test_model_cache_claims_are_kept_and_made_where_searches_run(helm, tmp_path):
    claims = by_kind(render(helm, tmp_path, "--set", "modelCache.create=true", "--set", "watchNamespaces={team-a}"),
                     "PersistentVolumeClaim")

    assert [(c["metadata"]["namespace"], c["metadata"]["annotations"]["helm.sh/resource-policy"]) for c in claims] == [("team-a", "keep")]


def test_the_dashboard_queries_only_metrics_the_operator_exports(helm, tmp_path):
    (configmap,) = [c for c in by_kind(render(helm, tmp_path, "--set", "metrics.grafanaDashboard.enabled=true"), "ConfigMap")]
    dashboard = json.loads(configmap["data"]["evomerge.json"])
    exported = {line.split()[2] for line in generate_latest(OperatorMetrics().registry).decode().splitlines()
                if line.startswith("# TYPE")}

    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried |= {word for word in _words(target["expr"]) if word.startswith("evomerge_")}
    missing = {name for name in queried if name not in exported and _family(name) not in exported}
    assert queried and not missing, missing


def _words(expr: str) -> list[str]:
    for char in "(){}[],*=~\"":
        expr = expr.replace(char, " ")
    return expr.split()


def _family(name: str) -> str:
    for suffix in ("_bucket", "_total", "_count", "_sum"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@pytest.mark.parametrize("status, generation, expected", [
    (None, 1, "Progressing"),
    ({"observedGeneration": 1, "phase": "Running", "conditions": [
        {"type": "Ready", "status": "False", "reason": "Searching", "message": "controller Job x is running"},
        {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": ""}]}, 1, "Progressing"),
    ({"observedGeneration": 1, "phase": "Succeeded", "conditions": [
        {"type": "Ready", "status": "True", "reason": "Succeeded", "message": "best 0.8"}]}, 1, "Healthy"),
    ({"observedGeneration": 1, "phase": "Succeeded", "conditions": [
        {"type": "Ready", "status": "True", "reason": "Succeeded", "message": "best 0.8"}]}, 2, "Progressing"),
    ({"observedGeneration": 2, "phase": "Suspended", "conditions": []}, 2, "Suspended"),
    ({"observedGeneration": 2, "phase": "Failed", "conditions": [
        {"type": "Degraded", "status": "True", "reason": "InvalidSpec", "message": "experts: list at least two"}]}, 2, "Degraded"),
])
def test_argocd_health_check_reads_the_conditions(status, generation, expected):
    from lupa import LuaRuntime

    lua = LuaRuntime(unpack_returned_tuples=True)
    obj = {"metadata": {"generation": generation}}
    if status is not None:
        obj["status"] = status
    lua.globals().obj = _to_lua(lua, obj)

    health = lua.execute((CHART / "docs" / "argocd" / "health.lua").read_text())

    assert health["status"] == expected
    if expected == "Degraded":
        assert health["message"] == "InvalidSpec: experts: list at least two"


def _to_lua(lua, value):
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def test_by_default_the_servers_are_the_images_the_engine_catalogue_pins(helm, tmp_path):
    settings = ClusterSettings.from_env(operator_env(render(helm, tmp_path)))
    assert all(settings.server_image(engine) == server_image(engine) for engine in SERVED_ENGINES)


def operator_env(objects: list[dict]) -> dict[str, str]:
    (deployment,) = by_kind(objects, "Deployment")
    return {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_every_served_engines_image_and_the_port_reach_the_operators_settings(helm, tmp_path):
    images = {engine: f"registry.example/{engine}@sha256:" + "ab" * 32 for engine in SERVED_ENGINES}
    sets = [arg for engine, image in images.items() for arg in ("--set", f"servers.images.{engine}={image}")]

    settings = ClusterSettings.from_env(operator_env(render(helm, tmp_path, *sets, "--set", "servers.port=18080")))

    assert {engine: settings.server_image(engine) for engine in SERVED_ENGINES} == images
    assert settings.server_port == 18080


def test_the_chart_names_no_engine_an_engine_it_has_never_seen_gets_its_variable(helm, tmp_path):
    env = operator_env(render(helm, tmp_path, "--set", "servers.images.newengine=registry.example/new:1"))

    assert env["EVOMERGE_NEWENGINE_IMAGE"] == "registry.example/new:1"  # what ClusterSettings reads for engine newengine
    assert not [name for name in env if name.endswith("_IMAGE") and name != "EVOMERGE_WORKER_IMAGE"
                and name != "EVOMERGE_NEWENGINE_IMAGE"]  # unset engines: no variable, the catalogue's pins


def test_the_per_engine_keys_of_old_are_refused_with_the_key_that_replaced_them(helm, tmp_path):
    env = {**os.environ, "HELM_CACHE_HOME": str(tmp_path / "c"), "HELM_CONFIG_HOME": str(tmp_path / "f")}
    result = subprocess.run([str(helm), "template", "evo", str(CHART), "--set", "servers.vllmImage=registry.example/vllm:1"],
                            capture_output=True, text=True, env=env)

    assert result.returncode != 0
    assert "servers.vllmImage: write servers.images.vllm instead" in result.stderr
