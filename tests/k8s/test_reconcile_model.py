"""plan_model and the Expert checks as pure functions."""

from __future__ import annotations

from evomerge.k8s.conditions import find
from evomerge.k8s.messages import ExportResult, decode_export, encode_export
from evomerge.k8s.reconcile_expert import plan_expert_status
from evomerge.k8s.reconcile_model import ModelObservation, plan_model
from evomerge.k8s.settings import ClusterSettings

NOW = "2026-01-01T00:00:00Z"
SETTINGS = ClusterSettings()
RECIPE = {"method": "task_arithmetic", "baseUri": "pvc://m/base", "groups": ["all"], "options": {},
          "experts": [{"name": "a", "uri": "pvc://m/a", "params": {"weight": {"all": 0.5}}}]}
SEARCH = {"apiVersion": "evomerge.dev/v1alpha1", "kind": "MergeSearch", "metadata": {"name": "jp", "namespace": "ns", "uid": "s"},
          "spec": {"baseModel": {"uri": "pvc://m/base"}, "experts": [{"name": "a", "uri": "pvc://m/a"}, {"name": "b", "uri": "pvc://m/b"}],
                   "objectives": [{"task": "t"}], "heldOut": [{"task": "h"}]}}


def model(version: int = 1, status: dict | None = None, **serving) -> dict:
    return {
        "apiVersion": "evomerge.dev/v1alpha1", "kind": "MergedModel",
        "metadata": {"name": "jp", "namespace": "ns", "uid": "mm", "generation": version},
        "spec": {"search": "jp", "version": version, "recipe": RECIPE, "outputUri": f"pvc://out/jp/v{version}",
                 "lineage": [{"name": "base", "uri": "pvc://m/base"}, {"name": "a", "uri": "pvc://m/a"}],
                 "scores": {"search": {"t/acc": "0.7"}}, "serving": {"enabled": bool(serving), **serving}},
        "status": status or {},
    }


def export_job(version: int, conditions: list) -> dict:
    return {"kind": "Job", "metadata": {"name": f"jp-export-v{version}", "resourceVersion": "1"}, "status": {"conditions": conditions}}


def test_a_new_version_starts_its_export_job():
    plan = plan_model(model(), ModelObservation(search=SEARCH), SETTINGS, NOW)

    assert [o["kind"] for o in plan.create] == ["ConfigMap", "Job"]
    assert plan.status["phase"] == "Exporting" and plan.status["exportJob"] == "jp-export-v1"
    assert find(plan.status["conditions"], "Progressing")["status"] == "True"
    assert [e.reason for e in plan.events] == ["ExportStarted"]


def test_a_finished_export_records_held_out_scores_and_content_hashes():
    message = encode_export(ExportResult({"h/acc": 0.61}, {"base": "ab" * 32, "a": "cd" * 32}, output="ef" * 32))
    observed = ModelObservation(search=SEARCH, export_jobs=[export_job(1, [{"type": "Complete", "status": "True"}])],
                                export_message=message)

    plan = plan_model(model(), observed, SETTINGS, NOW)

    status = plan.status
    assert status["phase"] == "Ready" and status["version"] == 1 and status["outputUri"] == "pvc://out/jp/v1"
    assert status["outputSha256"] == "ef" * 32
    assert status["scores"] == {"search": {"t/acc": "0.7"}, "heldOut": {"h/acc": "0.61"}}
    assert status["lineage"] == [{"name": "base", "uri": "pvc://m/base", "sha256": "ab" * 32},
                                 {"name": "a", "uri": "pvc://m/a", "sha256": "cd" * 32}]
    assert find(status["conditions"], "Ready")["status"] == "True"


def test_an_export_that_read_nothing_back_names_the_version_lost_never_ready():
    message = encode_export(ExportResult({"h/acc": 0.61}, {"base": "ab" * 32}))  # no "o": nothing at the output
    observed = ModelObservation(search=SEARCH, export_jobs=[export_job(1, [{"type": "Complete", "status": "True"}])],
                                export_message=message)

    plan = plan_model(model(), observed, SETTINGS, NOW)

    assert plan.status["phase"] == "Failed" and "version" not in plan.status
    ready, degraded = find(plan.status["conditions"], "Ready"), find(plan.status["conditions"], "Degraded")
    assert ready["status"] == "False" and (degraded["status"], degraded["reason"]) == ("True", "OutputLost")
    assert "version 1 is lost" in degraded["message"] and "pvc://out/jp/v1" in degraded["message"]
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "OutputLost")]


def test_an_output_no_pod_keeps_is_an_invalid_spec_naming_the_field():
    bare = model()
    bare["spec"]["outputUri"] = "pvc:/v1"  # what `pvc://` became once the version was appended

    plan = plan_model(bare, ModelObservation(search=SEARCH), SETTINGS, NOW)

    degraded = find(plan.status["conditions"], "Degraded")
    assert plan.status["phase"] == "Failed" and degraded["reason"] == "InvalidSpec" and not plan.create
    assert degraded["message"].startswith("spec.outputUri: 'pvc:/v1': write pvc://<claim>/<path>")


def test_a_failed_export_degrades_the_model_and_says_why():
    observed = ModelObservation(search=SEARCH, export_jobs=[export_job(1, [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])],
                                export_message=encode_export(ExportResult(error="expert 'a': tensor x has shape [2], base has [3]")))

    plan = plan_model(model(), observed, SETTINGS, NOW)

    assert plan.status["phase"] == "Failed"
    degraded = find(plan.status["conditions"], "Degraded")
    assert degraded["status"] == "True" and "has shape [2]" in degraded["message"]
    assert [e.type for e in plan.events] == ["Warning"]


def test_serving_follows_the_exported_version_and_rolls_on_a_new_one():
    ready_v1 = {"phase": "Ready", "version": 1, "outputUri": "pvc://out/jp/v1"}
    first = plan_model(model(1, ready_v1, engine="vllm"), ModelObservation(search=SEARCH), SETTINGS, NOW)
    deployment, service = (o for o in first.create if o["kind"] in ("Deployment", "Service"))
    assert first.status["endpoint"] == "http://jp-serve.ns.svc"

    deployment["metadata"]["resourceVersion"] = "7"
    ready_v2 = {"phase": "Ready", "version": 2, "outputUri": "pvc://out/jp/v2"}
    second = plan_model(model(2, ready_v2, engine="vllm"), ModelObservation(search=SEARCH, deployment=deployment, service=service),
                        SETTINGS, NOW)
    (rolled,) = second.replace
    assert rolled["spec"]["template"]["metadata"]["annotations"]["evomerge.dev/version"] == "2"
    assert rolled["metadata"]["resourceVersion"] == "7"
    assert "ServingRolled" in [e.reason for e in second.events]

    off = plan_model(model(2, ready_v2), ModelObservation(search=SEARCH, deployment=deployment, service=service), SETTINGS, NOW)
    assert sorted(off.delete) == [("Deployment", "jp-serve"), ("Service", "jp-serve")]
    assert off.status["observedGeneration"] == 2  # a serving-only change is observed too


def test_older_export_jobs_go_when_a_new_version_arrives():
    observed = ModelObservation(search=SEARCH, export_jobs=[export_job(1, [{"type": "Complete", "status": "True"}])])

    plan = plan_model(model(2, {"phase": "Ready", "version": 1}), observed, SETTINGS, NOW)

    assert plan.delete == [("Job", "jp-export-v1")]
    assert [o["metadata"]["name"] for o in plan.create] == ["jp-export-v2", "jp-export-v2"]


def test_export_messages_fit_the_termination_log_and_round_trip():
    hashes = {f"expert-{i}": "f" * 64 for i in range(60)}
    message = encode_export(ExportResult({"h/acc": 0.5}, hashes, output="e" * 64))

    assert len(message.encode()) <= 4096
    decoded = decode_export(message)
    assert decoded.held_out == {"h/acc": 0.5} and set(decoded.hashes) == set(hashes) and decoded.output == "e" * 64
    assert decode_export("Traceback: boom").error.startswith("the export Job's termination message is not a result")


def test_an_expert_tuned_from_another_base_is_incompatible_with_the_search_selecting_it():
    expert = {"metadata": {"name": "abel", "namespace": "ns", "generation": 1, "labels": {"family": "tiny"}},
              "spec": {"uri": "pvc://m/abel", "baseModel": "pvc://m/other"}}
    selecting = {**SEARCH, "spec": {**SEARCH["spec"], "expertSelector": {"matchLabels": {"family": "tiny"}}}}

    status = plan_expert_status(expert, [selecting], NOW)
    assert (status["compatible"], status["reason"]) == (False, "BaseModelMismatch")
    assert "MergeSearch jp merges onto pvc://m/base" in status["message"]
    assert find(status["conditions"], "Ready")["status"] == "False"

    status = plan_expert_status(expert, [SEARCH], NOW)  # no search selects it: nothing to mismatch
    assert (status["compatible"], status["reason"]) == (True, "Compatible")
    bad_uri = {**expert, "spec": {"uri": "ftp://x"}}
    assert plan_expert_status(bad_uri, [], NOW)["reason"] == "InvalidUri"
