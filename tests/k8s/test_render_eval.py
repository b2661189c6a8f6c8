"""Evaluation Jobs as plain dicts: one in-process scorer (transformers) or merge → native sidecar → scorer."""

from __future__ import annotations

import json

import pytest

from evomerge.k8s.render_eval import render_eval_job, render_recipes_configmap
from evomerge.k8s.settings import ClusterSettings
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.spec.merge_search import MergeSearchSpec

SEARCH = {"apiVersion": "evomerge.dev/v1alpha1", "kind": "MergeSearch",
          "metadata": {"name": "jp", "namespace": "ns", "uid": "uid-1"}}
OWNER = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "jp-controller-e1-abc", "uid": "job-uid"}}
SETTINGS = ClusterSettings(worker_image="worker:1", tgi_image="tgi:3.3.7", vllm_image="vllm:x")


def spec(engine: str = "transformers", **evaluation) -> MergeSearchSpec:
    return MergeSearchSpec.model_validate({
        "baseModel": {"uri": "pvc://models/base"},
        "experts": [{"name": "a", "uri": "pvc://models/a"}, {"name": "b", "uri": "pvc://other/b"}],
        "objectives": [{"task": "t"}],
        "evaluation": {
            "engine": engine, "timeoutSeconds": 1200,
            "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "40Gi"}},
            "nodeSelector": {"nvidia.com/gpu.product": "H100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            **evaluation,
        },
    })


def test_transformers_job_scores_the_batch_in_one_tokenless_restricted_container():
    job = render_eval_job(SEARCH, 1, "jp-e1-c000004-2", ["c000004", "c000005"], spec(), SETTINGS, OWNER)

    assert job["metadata"]["ownerReferences"][0]["uid"] == "job-uid"
    assert job["metadata"]["annotations"]["evomerge.dev/candidates"] == "c000004,c000005"
    assert job["metadata"]["labels"]["evomerge.dev/component"] == "evaluation"
    assert "app.kubernetes.io/instance" not in job["metadata"]["labels"]
    body = job["spec"]
    assert (body["backoffLimit"], body["activeDeadlineSeconds"], body["ttlSecondsAfterFinished"]) == (1, 1200, 3600)
    assert body["podFailurePolicy"]["rules"][0]["onExitCodes"] == {"containerName": "score", "operator": "In", "values": [3]}
    pod = body["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "initContainers" not in pod
    (score,) = pod["containers"]
    assert score["command"] == ["evomerge", "evaluate-batch", "--spec", "/etc/evomerge/spec/spec.json",
                                "--recipes", "/etc/evomerge/job/recipes.json"]
    assert score["resources"] == {"limits": {"nvidia.com/gpu": "1", "memory": "40Gi"}}
    assert score["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert "terminationMessagePath" not in score  # the default /dev/termination-log
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["spec"]["configMap"] == {"name": "jp-e1", "items": [{"key": "spec.json", "path": "spec.json"}]}
    assert volumes["job"]["configMap"] == {"name": "jp-e1-c000004-2"}
    claims = sorted(v["persistentVolumeClaim"]["claimName"] for v in volumes.values() if "persistentVolumeClaim" in v)
    assert claims == ["models", "other"]
    mounts = {m["mountPath"] for m in score["volumeMounts"]}
    assert {"/mnt/pvc/models", "/mnt/pvc/other", "/etc/evomerge/spec", "/etc/evomerge/job", "/tmp"} <= mounts


@pytest.mark.parametrize("engine, image, health", [("tgi", "tgi:3.3.7", "--enable-prefill-logprobs"), ("vllm", "vllm:x", "--max-logprobs")])
def test_server_engines_merge_in_an_init_container_then_serve_from_a_native_sidecar(engine, image, health):
    job = render_eval_job(SEARCH, 1, "jp-e1-c000001-1", ["c000001"], spec(engine), SETTINGS, OWNER)

    pod = job["spec"]["template"]["spec"]
    merge, server = pod["initContainers"]
    assert merge["command"] == ["evomerge", "merge", "/etc/evomerge/job/recipe.json", "--out", "/model/candidate"]
    assert "restartPolicy" not in merge  # a plain init container: it ends before the server starts
    assert server["restartPolicy"] == "Always"  # a native sidecar: it does not hold the Job open
    assert server["image"] == image and health in server["args"]
    assert server["startupProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    assert server["startupProbe"]["periodSeconds"] * server["startupProbe"]["failureThreshold"] == 1200
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "shm", "mountPath": "/dev/shm"} in server["volumeMounts"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory" and volumes["shm"]["emptyDir"]["sizeLimit"] == "1Gi"
    assert volumes["scratch"]["emptyDir"]["sizeLimit"] == "64Gi"
    (score,) = pod["containers"]
    assert score["command"][-4:] == ["--model-dir", "/model/candidate", "--server-url", "http://127.0.0.1:8080"]
    assert "nvidia.com/gpu" not in json.dumps(score["resources"])


@pytest.mark.parametrize("engine", ["transformers", "vllm"])
def test_reference_scores_for_the_report_are_comparison_jobs_that_may_score_the_held_out_split(engine):
    searched = render_eval_job(SEARCH, 1, "jp-e1-cmp-s0-1", ["cmp-s0"], spec(engine), SETTINGS, OWNER, "comparison")
    held_out = render_eval_job(SEARCH, 1, "jp-e1-cmp-h0-1", ["cmp-h0"], spec(engine), SETTINGS, OWNER, "comparison", True)

    for job in (searched, held_out):
        assert job["metadata"]["labels"]["evomerge.dev/component"] == "comparison"
        assert job["spec"]["template"]["metadata"]["labels"]["evomerge.dev/component"] == "comparison"
    scorer = [c for c in held_out["spec"]["template"]["spec"]["containers"] if c["name"] == "score"][0]
    assert scorer["command"][:7] == ["evomerge", "evaluate-batch", "--spec", "/etc/evomerge/spec/spec.json",
                                     "--recipes", "/etc/evomerge/job/recipes.json", "--held-out"]
    assert "--held-out" not in searched["spec"]["template"]["spec"]["containers"][0]["command"]


def test_server_engines_take_one_candidate_per_pod():
    with pytest.raises(ValueError, match="one candidate per pod"):
        render_eval_job(SEARCH, 1, "j", ["c1", "c2"], spec("vllm"), SETTINGS, OWNER)


def test_recipes_configmap_is_owned_by_its_job_and_carries_the_batch_in_order():
    job = render_eval_job(SEARCH, 1, "jp-e1-c000001-1", ["c000001"], spec(), SETTINGS, OWNER)
    job["metadata"]["uid"] = "eval-uid"
    recipe = MergeRecipe("task_arithmetic", "pvc://models/base", (ExpertWeights("a", "pvc://models/a", {"weight": {"all": 0.3}}),))

    configmap = render_recipes_configmap(job, [("c000001", recipe)])

    assert configmap["metadata"]["name"] == "jp-e1-c000001-1"
    assert configmap["metadata"]["ownerReferences"][0]["uid"] == "eval-uid"
    assert json.loads(configmap["data"]["recipes.json"]) == [{"id": "c000001", "recipe": recipe.to_dict()}]
    assert json.loads(configmap["data"]["recipe.json"]) == recipe.to_dict()
