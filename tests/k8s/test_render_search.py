"""The epoch ConfigMap, the controller Job and the namespace's accounts, rendered as plain dicts."""

from __future__ import annotations

import json

from evomerge.k8s.naming import child_name
from evomerge.k8s.render_eval import render_eval_job
from evomerge.k8s.render_search import (
    Epoch,
    controller_job_name as job_name_of,
    input_digest,
    read_epoch_configmap,
    render_controller_job,
    render_epoch_configmap,
    render_namespace_accounts,
)
from evomerge.k8s.settings import ClusterSettings
from evomerge.spec.merge_search import MergeSearchSpec

SEARCH = {
    "apiVersion": "evomerge.dev/v1alpha1",
    "kind": "MergeSearch",
    "metadata": {"name": "jp-math", "namespace": "team-a", "uid": "uid-1", "generation": 3,
                 "labels": {"app.kubernetes.io/instance": "argo-app", "team": "a"}},
}


def spec(**overrides) -> MergeSearchSpec:
    data = {
        "baseModel": {"uri": "pvc://models/mistral"},
        "experts": [{"name": "shisa", "uri": "pvc://models/shisa"}, {"name": "abel", "uri": "hf://org/abel"}],
        "objectives": [{"task": "gsm8k_ja"}],
        "storage": {"modelCache": {"persistentVolumeClaim": "cache"}},
    }
    data.update(overrides)
    return MergeSearchSpec.model_validate(data)


def test_controller_job_runs_the_controller_command_with_an_owner_and_our_labels_only():
    epoch = Epoch(2, spec(), seeds=[{"method": "task_arithmetic"}], offsets={"round": 1})
    job = render_controller_job(SEARCH, epoch, ClusterSettings(worker_image="worker:1"))

    assert job["metadata"]["name"] == job_name_of("jp-math", epoch)
    assert job["metadata"]["ownerReferences"] == [{
        "apiVersion": "evomerge.dev/v1alpha1", "kind": "MergeSearch", "name": "jp-math", "uid": "uid-1",
        "controller": True, "blockOwnerDeletion": True,
    }]
    labels = job["metadata"]["labels"]
    assert "app.kubernetes.io/instance" not in labels and "team" not in labels  # never the parent's labels
    assert labels["evomerge.dev/search"] == "jp-math" and labels["evomerge.dev/epoch"] == "2"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["evomerge", "controller", "--search", "team-a/jp-math", "--epoch", "2"]
    assert container["image"] == "worker:1"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["EVOMERGE_WORKER_IMAGE"] == "worker:1"  # the controller renders evaluation Jobs with the same settings
    assert env["EVOMERGE_CONTROLLER_JOB"] == job["metadata"]["name"]
    assert env["HF_HOME"] == "/models/huggingface" and env["HF_HUB_OFFLINE"] == "1"
    assert pod["serviceAccountName"] == "evomerge-controller"
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                            "readOnlyRootFilesystem": True, "runAsNonRoot": True}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    claims = {v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
              for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"models": True, "cache": True}
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {"containerName": "controller", "operator": "In", "values": [1, 2]}}
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    # a deleted pod (a drain loop, an eviction storm, kubectl delete pod) is SIGTERMed: no retry of the budget is spent
    assert rules[2] == {"action": "Ignore", "onExitCodes": {"containerName": "controller", "operator": "In", "values": [143]}}


def test_the_controller_mounts_the_output_claim_writable_for_the_report():
    job = render_controller_job(SEARCH, Epoch(1, spec(storage={"output": {"uri": "pvc://published/jp"}})), ClusterSettings())

    pod = job["spec"]["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
              for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"models": True, "published": False}
    mounts = {m["mountPath"]: m["readOnly"] for m in pod["containers"][0]["volumeMounts"] if m["name"].startswith("pvc-")}
    assert mounts["/mnt/pvc/published"] is False


def test_the_controller_mounts_the_claims_of_seed_recipes_read_only_and_evaluation_pods_do_not():
    seeded = spec(search={"seeds": [{"uri": "pvc://recipes/jp/seed.yaml"}, {"uri": "/etc/seed.yaml"},
                                    {"mergekit": {"merge_method": "linear"}}]})
    job = render_controller_job(SEARCH, Epoch(1, seeded), ClusterSettings())

    pod = job["spec"]["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
              for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"models": True, "recipes": True, "cache": True}
    mounts = {m["mountPath"]: m["readOnly"] for m in pod["containers"][0]["volumeMounts"] if m["name"].startswith("pvc-")}
    assert mounts["/mnt/pvc/recipes"] is True
    evaluation = render_eval_job(SEARCH, 1, "jp-math-eval", ["c1"], seeded, ClusterSettings(), SEARCH)
    assert "recipes" not in json.dumps(evaluation["spec"]["template"]["spec"]["volumes"])


def test_a_changed_evaluation_section_renames_the_controller_job_but_keeps_the_input_digest():
    before = Epoch(1, spec())
    after = Epoch(1, spec(evaluation={"parallelism": 8}))

    assert job_name_of("s", before) != job_name_of("s", after)
    assert input_digest(before.spec) == input_digest(after.spec)
    assert input_digest(spec(merge={"method": "ties", "evolve": ["weight", "density"]})) != input_digest(before.spec)
    assert input_digest(spec(experts=[{"name": "shisa", "uri": "pvc://models/shisa"}, {"name": "x", "uri": "pvc://m/x"}])) != input_digest(before.spec)


def test_a_new_field_with_a_default_keeps_the_input_digest_so_upgrades_do_not_restart_searches():
    class NextVersionSpec(MergeSearchSpec):
        added_in_a_later_release: int = 3

    assert input_digest(NextVersionSpec.model_validate(spec().model_dump(by_alias=True))) == input_digest(spec())
    assert input_digest(spec(merge={"granularity": "layerGroups", "layerGroups": 2})) != input_digest(spec())


def test_epoch_configmap_round_trips_spec_seeds_and_offsets():
    epoch = Epoch(3, spec(), seeds=[{"method": "task_arithmetic", "experts": []}], offsets={"round": 2, "evaluations": 40})
    configmap = render_epoch_configmap(SEARCH, epoch)

    document, seeds, offsets = read_epoch_configmap(configmap)
    assert configmap["metadata"]["name"] == "jp-math-e3"
    assert configmap["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert MergeSearchSpec.model_validate(document["spec"]) == epoch.spec
    assert document["kind"] == "MergeSearch"  # what `evomerge evaluate-batch --spec` reads
    assert seeds == epoch.seeds and offsets == epoch.offsets
    assert configmap["data"]["input-digest"] == input_digest(epoch.spec)


def test_namespace_accounts_bind_only_the_controller_and_give_evaluation_pods_no_token():
    settings = ClusterSettings()
    controller_sa, evaluation_sa, binding = render_namespace_accounts("team-a", settings)

    assert controller_sa["metadata"] == {"name": "evomerge-controller", "namespace": "team-a",
                                         "labels": controller_sa["metadata"]["labels"]}
    assert evaluation_sa["automountServiceAccountToken"] is False
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "evomerge-controller"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "evomerge-controller", "namespace": "team-a"}]


def test_child_names_stay_within_63_characters_and_distinct():
    long_a, long_b = "a" * 60 + "x", "a" * 60 + "y"
    names = {child_name(long_a, "controller-e1-abcdef"), child_name(long_b, "controller-e1-abcdef")}

    assert all(len(n) <= 63 for n in names) and len(names) == 2
    assert child_name("short", "e2") == "short-e2"


def test_an_async_search_whose_pods_ask_for_work_gives_its_controller_its_own_ip_and_the_work_port():
    asking = render_controller_job(SEARCH, Epoch(1, spec(search={"mode": "async"}, evaluation={"engine": "vllm"})),
                                   ClusterSettings(work_port=9000))
    (container,) = asking["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["EVOMERGE_POD_IP"] == {"name": "EVOMERGE_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert env["EVOMERGE_WORK_PORT"]["value"] == "9000" and container["ports"] == [{"name": "work", "containerPort": 9000}]
    for other in (spec(evaluation={"engine": "vllm"}), spec(search={"mode": "async"}, evaluation={"engine": "tgi"})):
        (container,) = render_controller_job(SEARCH, Epoch(1, other), ClusterSettings())["spec"]["template"]["spec"]["containers"]
        assert "ports" not in container and "EVOMERGE_POD_IP" not in {e["name"] for e in container["env"]}
