"""slerp in the cluster: one expert, listed or picked by expertSelector, runs to a published MergedModel.

slerp interpolates between the base and exactly one expert; the admission rules once asked for two experts
as every other method does, so no slerp search could run. Both searches here run at once in one namespace.
"""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from .conftest import _exists
from .helpers import GROUP_VERSION, SEARCH_TIMEOUT, condition, eventually, finished, nano_search, status_of

SLERP = {"method": "slerp", "evolve": ["t"], "bounds": {"t": ["0", "1"]}}


@pytest.fixture(scope="module")
def slerp_runs(kube, operator, node, api_client, zoo, fit_tasks) -> dict[str, tuple[dict, dict]]:
    """Both searches, run to the end with their MergedModels exported (or failed)."""
    core = k8s.CoreV1Api(api_client)
    namespace = "slerp-e2e"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    eventually(lambda: _exists(core, namespace), f"the default ServiceAccount of {namespace}", timeout=30)
    kube.create({"apiVersion": GROUP_VERSION, "kind": "Expert",
                 "metadata": {"name": "add", "namespace": namespace, "labels": {"family": "slerp"}},
                 "spec": {"uri": f"file://{zoo.experts['add']}", "baseModel": f"file://{zoo.base}"}})
    bodies = {
        "listed": nano_search("listed", namespace, zoo, fit_tasks, experts=("add",), generations=1, held_out=False, merge=SLERP),
        "selected": nano_search("selected", namespace, zoo, fit_tasks, experts=(), generations=1, held_out=False, merge=SLERP,
                                expertSelector={"matchLabels": {"family": "slerp"}}),
    }
    for body in bodies.values():
        kube.create(body)
    runs = {}
    for name in bodies:
        status = finished(kube, namespace, name)
        model = eventually(lambda n=name: status_of(kube, namespace, n, "MergedModel").get("phase") in ("Ready", "Failed")
                           and kube.get("MergedModel", namespace, n), f"MergedModel {name}", SEARCH_TIMEOUT)
        runs[name] = (status, model)
    yield runs
    core.delete_namespace(namespace)


@pytest.mark.parametrize("name", ["listed", "selected"])
def test_slerp_with_one_expert_runs_to_a_published_merged_model(slerp_runs, published, name):
    status, model = slerp_runs[name]

    assert status["phase"] == "Succeeded" and condition(status, "Degraded")["status"] == "False", status
    recipe = status["best"]["recipe"]
    assert recipe["method"] == "slerp" and [e["name"] for e in recipe["experts"]] == ["add"]
    assert model["status"]["phase"] == "Ready" and len(model["status"]["outputSha256"]) == 64, model["status"]
    exported = published / "slerp-e2e" / name / "v1"
    assert list(exported.glob("*.safetensors")) and (exported / "config.json").exists()
