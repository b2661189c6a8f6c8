"""ResourceQuotas that refuse what the operator creates: the search, then its MergedModel, say so on the
object — Degraded with the quota and what to lower, one Warning — and go on once the quota is lifted.
The operator here is the chart's pod, as `evomerge operator` with the chart's ServiceAccount."""

from __future__ import annotations

from kubernetes import client as k8s

from .helpers import condition, eventually, events, finished, nano_search, status_of


def _quota(core: k8s.CoreV1Api, namespace: str, name: str, hard: dict[str, str]) -> None:
    core.create_namespaced_resource_quota(namespace, k8s.V1ResourceQuota(
        metadata=k8s.V1ObjectMeta(name=name), spec=k8s.V1ResourceQuotaSpec(hard=hard)))
    eventually(lambda: core.read_namespaced_resource_quota(name, namespace).status.hard, f"ResourceQuota {name} to be counted")


def _degraded(kube, namespace: str, name: str, kind: str, reason: str) -> dict:
    def now() -> dict:
        return condition(status_of(kube, namespace, name, kind), "Degraded")

    return eventually(lambda: now().get("reason") == reason and now(), f"{kind} {name} to be Degraded: {reason}",
                      detail=lambda: status_of(kube, namespace, name, kind))


def _warnings(kube, namespace: str, name: str, kind: str) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in events(kube, namespace, name, kind) if e["type"] == "Warning"]


def test_quotas_that_refuse_the_operators_jobs_and_deployments_are_reported_and_lifted(kube, api_client, operator, namespace,
                                                                                      zoo, fit_tasks):
    core = k8s.CoreV1Api(api_client)
    _quota(core, namespace, "no-jobs", {"count/jobs.batch": "0"})
    _quota(core, namespace, "no-serving", {"count/deployments.apps": "0"})
    kube.create(nano_search("quoted", namespace, zoo, fit_tasks, population=2, generations=1, held_out=False))

    degraded = _degraded(kube, namespace, "quoted", "MergeSearch", "QuotaExceeded")
    assert degraded["status"] == "True" and f"refused to create Job {namespace}/quoted-controller-e1-" in degraded["message"]
    assert "exceeded quota: no-jobs" in degraded["message"]
    assert degraded["message"].endswith(f"raise ResourceQuota no-jobs in namespace {namespace}, or lower "
                                        "spec.evaluation.parallelism or spec.evaluation.resources")
    assert eventually(lambda: _warnings(kube, namespace, "quoted", "MergeSearch"), "the Warning") == [("QuotaExceeded", degraded["message"])]

    core.delete_namespaced_resource_quota("no-jobs", namespace)
    status = finished(kube, namespace, "quoted")
    assert status["phase"] == "Succeeded", status
    assert (condition(status, "Degraded")["status"], condition(status, "Degraded")["reason"]) == ("False", "AsExpected")
    assert [reason for reason, _ in _warnings(kube, namespace, "quoted", "MergeSearch")] == ["QuotaExceeded"]  # once, not per resync
    eventually(lambda: status_of(kube, namespace, "quoted", "MergedModel").get("phase") == "Ready", "the merge to be exported",
               timeout=240, detail=lambda: status_of(kube, namespace, "quoted", "MergedModel"))

    kube.patch("MergedModel", namespace, "quoted", {"spec": {"serving": {"enabled": True, "replicas": 0}}})
    refused = _degraded(kube, namespace, "quoted", "MergedModel", "QuotaExceeded")
    assert f"refused to create Deployment {namespace}/" in refused["message"] and "exceeded quota: no-serving" in refused["message"]
    assert refused["message"].endswith("or lower spec.serving.replicas or spec.serving.resources")
    model = status_of(kube, namespace, "quoted", "MergedModel")
    assert model["phase"] == "Ready" and condition(model, "Ready")["status"] == "True"  # the export stands
    assert model["observedGeneration"] == 1  # generation 2 (serving) is not reconciled yet

    core.delete_namespaced_resource_quota("no-serving", namespace)
    served = eventually(lambda: status_of(kube, namespace, "quoted", "MergedModel").get("endpoint")
                        and status_of(kube, namespace, "quoted", "MergedModel"), "the model to be served")
    assert condition(served, "Degraded")["status"] == "False" and served["observedGeneration"] == 2
    assert [reason for reason, _ in _warnings(kube, namespace, "quoted", "MergedModel")] == ["QuotaExceeded"]
