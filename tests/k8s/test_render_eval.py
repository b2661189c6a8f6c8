"""Evaluation Jobs as plain dicts: one in-process scorer (transformers) or merge → native sidecar → scorer."""

from __future__ import annotations

import json

import pytest

from evomerge.catalogue.engines import ADAPTER_ENGINES, ENGINES, SERVED_ENGINES, server_image
from evomerge.k8s.render_eval import render_eval_job, render_recipes_configmap
from evomerge.k8s.settings import ClusterSettings
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.spec.merge_search import MergeSearchSpec

SEARCH = {"apiVersion": "evomerge.dev/v1alpha1", "kind": "MergeSearch",
          "metadata": {"name": "jp", "namespace": "ns", "uid": "uid-1"}}
OWNER = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "jp-controller-e1-abc", "uid": "job-uid"}}
SETTINGS = ClusterSettings(worker_image="worker:1", server_images={"tgi": "tgi:3.3.7", "vllm": "vllm:x"})


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
    assert body["podFailurePolicy"]["rules"][0]["onExitCodes"] == {"containerName": "score", "operator": "In", "values": [3, 4]}
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


def test_tgi_merges_in_an_init_container_then_serves_one_candidate_from_a_native_sidecar():
    job = render_eval_job(SEARCH, 1, "jp-e1-c000001-1", ["c000001"], spec("tgi"), SETTINGS, OWNER)

    pod = job["spec"]["template"]["spec"]
    merge, server = pod["initContainers"]
    assert merge["command"] == ["evomerge", "merge", "/etc/evomerge/job/recipe.json", "--out", "/model/candidate"]
    assert "restartPolicy" not in merge  # a plain init container: it ends before the server starts
    assert server["restartPolicy"] == "Always"  # a native sidecar: it does not hold the Job open
    assert server["image"] == "tgi:3.3.7" and "--enable-prefill-logprobs" in server["args"]
    assert server["startupProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    assert server["startupProbe"]["periodSeconds"] * server["startupProbe"]["failureThreshold"] == 1200
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "shm", "mountPath": "/dev/shm"} in server["volumeMounts"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory" and volumes["shm"]["emptyDir"]["sizeLimit"] == "1Gi"
    assert volumes["scratch"]["emptyDir"] == {"sizeLimit": "64Gi"}
    (score,) = pod["containers"]
    assert score["command"][-4:] == ["--model-dir", "/model/candidate", "--server-url", "http://127.0.0.1:8080"]
    assert {"name": "scratch", "mountPath": "/model", "readOnly": True} in score["volumeMounts"]
    assert "nvidia.com/gpu" not in json.dumps(score["resources"])
    with pytest.raises(ValueError, match="at most 1 candidates per pod"):
        render_eval_job(SEARCH, 1, "j", ["c1", "c2"], spec("tgi"), SETTINGS, OWNER)


def test_vllm_serves_the_whole_batch_from_one_server_start_on_the_pods_loopback():
    job = render_eval_job(SEARCH, 1, "jp-e1-c000001-3", ["c000001", "c000002", "c000003"], spec("vllm", serverArgs=["--max-model-len", "4096"]),
                          SETTINGS, OWNER)

    pod = job["spec"]["template"]["spec"]
    merge, server = pod["initContainers"]
    assert merge["command"] == ["evomerge", "merge", "/etc/evomerge/job/recipe.json", "--out", "/model/candidate"]
    assert server["restartPolicy"] == "Always" and server["image"] == "vllm:x"
    assert server["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    args = server["args"]
    assert args[args.index("--model") + 1] == "/model/candidate" and args[args.index("--host") + 1] == "127.0.0.1"
    assert args[-2:] == ["--max-model-len", "4096"]  # spec.evaluation.serverArgs come last
    assert {"name": "VLLM_SERVER_DEV_MODE", "value": "1"} in server["env"]  # the reload routes: on the loopback only
    probe = server["startupProbe"]
    assert "httpGet" not in probe and "http://127.0.0.1:8080/health" in " ".join(probe["exec"]["command"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["scratch"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}  # candidates travel through memory
    (score,) = pod["containers"]
    assert {"name": "scratch", "mountPath": "/model"} in score["volumeMounts"]  # the scorer writes the later candidates
    assert score["command"][-4:] == ["--model-dir", "/model/candidate", "--server-url", "http://127.0.0.1:8080"]
    assert score["resources"] == {"limits": {"memory": "40Gi"}}  # it holds the experts; the GPU is the server's
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_sglang_serves_a_batch_on_the_loopback_with_its_own_launcher():
    job = render_eval_job(SEARCH, 1, "jp-e1-c000001-2", ["c000001", "c000002"], spec("sglang"), SETTINGS, OWNER)

    _merge, server = job["spec"]["template"]["spec"]["initContainers"]
    assert server["image"] == server_image("sglang")
    assert server["command"] == ["python3", "-m", "sglang.launch_server"]
    args = server["args"]
    assert args[args.index("--model-path") + 1] == "/model/candidate" and args[args.index("--host") + 1] == "127.0.0.1"
    assert "exec" in server["startupProbe"] and not any(e["name"] == "VLLM_SERVER_DEV_MODE" for e in server["env"])


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


def test_recipes_configmap_is_owned_by_its_job_and_carries_the_batch_in_order():
    job = render_eval_job(SEARCH, 1, "jp-e1-c000001-1", ["c000001"], spec(), SETTINGS, OWNER)
    job["metadata"]["uid"] = "eval-uid"
    recipe = MergeRecipe("task_arithmetic", "pvc://models/base", (ExpertWeights("a", "pvc://models/a", {"weight": {"all": 0.3}}),))

    configmap = render_recipes_configmap(job, [("c000001", recipe)])

    assert configmap["metadata"]["name"] == "jp-e1-c000001-1"
    assert configmap["metadata"]["ownerReferences"][0]["uid"] == "eval-uid"
    assert json.loads(configmap["data"]["recipes.json"]) == [{"id": "c000001", "recipe": recipe.to_dict()}]
    assert json.loads(configmap["data"]["recipe.json"]) == recipe.to_dict()


def lora_spec(engine: str, method: str = "task_arithmetic", base: str = "pvc://models/base", **extra) -> MergeSearchSpec:
    data = {
        "baseModel": {"uri": base},
        "experts": [{"name": "a", "uri": "pvc://models/a", "format": "lora"},
                    {"name": "b", "uri": "pvc://other/b", "format": "lora"}],
        "merge": {"method": method},
        "objectives": [{"task": "t"}],
        "evaluation": {"engine": engine, "timeoutSeconds": 1200},
        **extra,
    }
    return MergeSearchSpec.model_validate(data)


def _containers(job: dict) -> tuple[dict, dict, dict]:
    pod = job["spec"]["template"]["spec"]
    merge, server = pod["initContainers"]
    (score,) = pod["containers"]
    return merge, server, score


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_lora_candidates_are_served_as_one_combined_adapter_over_the_base(engine):
    job = render_eval_job(SEARCH, 1, "jp-e1-c000001-1", ["c000001"], lora_spec(engine), SETTINGS, OWNER)
    merge, server, score = _containers(job)

    assert merge["command"] == ["evomerge", "merge", "/etc/evomerge/job/recipe.json", "--out", "/model/candidate", "--adapter"]
    assert score["command"][-6:] == ["--model-dir", "/model/candidate", "--server-url", "http://127.0.0.1:8080",
                                     "--adapter", "candidate"]
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    assert mounts["/mnt/pvc/models"]["readOnly"] is True  # the base lives on that claim
    env = {e["name"]: e["value"] for e in server["env"]}
    if engine == "tgi":
        assert server["args"][:2] == ["--model-id", "/mnt/pvc/models/base"]
        assert env["LORA_ADAPTERS"] == "candidate=/model/candidate"
    else:
        args = server["args"]
        assert args[args.index("--model") + 1] == "/mnt/pvc/models/base"
        assert args[args.index("--served-model-name") + 1] == "base"  # the adapter alone is called candidate
        assert "--enable-lora" in args and args[args.index("--lora-modules") + 1] == "candidate=/model/candidate"
        assert server["command"][:2] == ["/bin/sh", "-c"]
        assert env["EVOMERGE_ADAPTER_CONFIG"] == "/model/candidate/adapter_config.json"


@pytest.mark.parametrize("rank, expected", [(6, "8"), (12, "16"), (300, "320"), (512, "512")])
def test_vllm_max_lora_rank_is_the_adapters_rank_rounded_up_to_a_value_vllm_accepts(rank, expected, tmp_path):
    job = render_eval_job(SEARCH, 1, "jp-e1-c000001-1", ["c000001"], lora_spec("vllm"), SETTINGS, OWNER)
    _, server, _ = _containers(job)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": rank}))
    argv = _run_vllm_wrapper(server, tmp_path)
    assert argv.returncode == 0, argv.stderr
    words = argv.stdout.split()
    assert words[:2] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert words[2:-2] == server["args"] and words[-2:] == ["--max-lora-rank", expected]


def test_vllm_refuses_to_start_on_an_adapter_above_its_largest_rank(tmp_path):
    job = render_eval_job(SEARCH, 1, "jp-e1-c000001-1", ["c000001"], lora_spec("vllm"), SETTINGS, OWNER)
    _, server, _ = _containers(job)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 600}))
    argv = _run_vllm_wrapper(server, tmp_path)
    assert argv.returncode != 0 and argv.stdout == ""
    assert "combined adapter rank 600 exceeds the largest --max-lora-rank of engine vllm (512)" in argv.stderr
    assert "or engine tgi" in argv.stderr


def _run_vllm_wrapper(server: dict, adapter_dir) -> "subprocess.CompletedProcess[str]":
    """The server's shell command with `python3 -m …` (vLLM itself) replaced by echoing its arguments."""
    import subprocess
    import sys

    shim = adapter_dir / "bin" / "python3"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nif [ "$1" = "-m" ]; then echo "$@"; exit 0; fi\nexec {sys.executable} "$@"\n')
    shim.chmod(0o755)
    env = {"PATH": f"{shim.parent}:/usr/bin:/bin", "EVOMERGE_ADAPTER_CONFIG": str(adapter_dir / "adapter_config.json")}
    return subprocess.run([*server["command"], *server["args"]], env=env, capture_output=True, text=True, timeout=60)


def test_an_hf_base_is_served_by_repo_id_from_the_model_cache():
    search = lora_spec("vllm", base="hf://org/base-7b@abc123", storage={"modelCache": {"persistentVolumeClaim": "cache"}})
    _, server, _ = _containers(render_eval_job(SEARCH, 1, "jp-e1-c000001-1", ["c000001"], search, SETTINGS, OWNER))
    args = server["args"]
    assert args[args.index("--model") + 1: args.index("--model") + 4] == ["org/base-7b", "--revision", "abc123"]
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env["HF_HOME"] == f"{SETTINGS.cache_mount}/huggingface" and env["HF_HUB_OFFLINE"] == "1"
    assert {"name": "model-cache", "mountPath": SETTINGS.cache_mount, "readOnly": True} in server["volumeMounts"]


@pytest.mark.parametrize("search", [
    lora_spec("vllm", method="ties"),  # sparsified: not low-rank
    lora_spec("tgi", method="linear", merge={"method": "linear", "normalize": False}),  # scales the base
    lora_spec("vllm", base="s3://bucket/base"),  # the server could not read the base
])
def test_candidates_that_are_not_one_servable_adapter_are_merged_into_a_checkpoint(search):
    merge, server, score = _containers(render_eval_job(SEARCH, 1, "jp-e1-c000001-1", ["c000001"], search, SETTINGS, OWNER))
    assert "--adapter" not in merge["command"] and "--adapter" not in score["command"]
    model_flag = "--model-id" if search.evaluation.engine == "tgi" else "--model"
    assert server["args"][server["args"].index(model_flag) + 1] == "/model/candidate"
    assert "LORA_ADAPTERS" not in {e["name"] for e in server["env"]}


@pytest.mark.parametrize("engine", ADAPTER_ENGINES)
def test_each_engine_hosts_the_adapter_as_its_catalogue_entry_declares(engine):
    hosting = ENGINES[engine].adapters
    _, server, _ = _containers(render_eval_job(SEARCH, 1, "jp-e1-c000001-1", ["c000001"], lora_spec(engine), SETTINGS, OWNER))
    env = {e["name"]: e["value"] for e in server["env"]}
    args = hosting.rendered_args("candidate", "/model/candidate")
    assert server["args"][len(server["args"]) - len(args):] == args
    assert all(env[k] == v for k, v in hosting.rendered_env("candidate", "/model/candidate"))
    launched = server["command"] + server["args"]
    assert launched[launched.index(ENGINES[engine].launch.command[0]):][:len(ENGINES[engine].launch.command)] == list(
        ENGINES[engine].launch.command)
    assert (server["command"][:2] == ["/bin/sh", "-c"]) == (hosting.rank_flag is not None)


@pytest.mark.parametrize("engine", [n for n in SERVED_ENGINES if n not in ADAPTER_ENGINES])
def test_an_engine_without_adapter_hosting_serves_lora_candidates_as_a_merged_checkpoint(engine):
    merge, server, _ = _containers(render_eval_job(SEARCH, 1, "jp-e1-c000001-1", ["c000001"], lora_spec(engine), SETTINGS, OWNER))
    assert "--adapter" not in merge["command"]
    assert server["args"][server["args"].index(ENGINES[engine].launch.model_flag) + 1] == "/model/candidate"


def test_a_pod_that_asks_for_work_names_itself_and_the_endpoint_and_has_no_deadline_of_its_own():
    job = render_eval_job(SEARCH, 1, "jp-e1-c000004-1", ["c000004"], spec("vllm"), SETTINGS, OWNER,
                          work_url="http://10.0.0.5:8070")

    assert "activeDeadlineSeconds" not in job["spec"]  # it lives for the epoch; the controller ends it
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (score,) = pod["containers"]
    assert score["command"][-2:] == ["--work-url", "http://10.0.0.5:8070"]
    assert {"name": "EVOMERGE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in score["env"]
    batch = render_eval_job(SEARCH, 1, "jp-e1-c000004-1", ["c000004"], spec("vllm"), SETTINGS, OWNER)
    assert batch["spec"]["activeDeadlineSeconds"] == 1200 and "--work-url" not in batch["spec"]["template"]["spec"]["containers"][0]["command"]
