"""plan_model and the Expert checks as pure functions."""

from __future__ import annotations

from evomerge.evaluate.paired import PairedTest
from evomerge.k8s.conditions import find
from evomerge.k8s.messages import ExportResult, decode_export, encode_export
from evomerge.k8s.reconcile_expert import plan_expert_status
from evomerge.k8s.promotion import GateResult
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


# ---- the promotion gate ---------------------------------------------------------------------------------
V1 = {"phase": "Ready", "version": 1, "outputUri": "pvc://out/jp/v1", "recipe": RECIPE, "scores": {"heldOut": {"h/acc": "0.5"}}}


def gate(promoted: bool, p_value: float, baseline: float = 0.5, candidate: float = 0.508) -> GateResult:
    """The export Job's verdict as judge() words it (tests/k8s/test_promotion.py tests the words)."""
    test = PairedTest("mcnemar", 250, baseline, candidate, p_value, (9, 7))
    return GateResult(promoted, "Improved" if promoted else "NotPromoted",
                      f"held-out {candidate - baseline:+.3g}, p = {p_value:.2g} {'<' if promoted else '≥'} 0.05", test, {"h/acc": baseline})


def finished_export(version: int, result: ExportResult, **serving) -> tuple[dict, ModelObservation]:
    return model(version, dict(V1), **serving), ModelObservation(
        search=SEARCH, export_jobs=[export_job(version, [{"type": "Complete", "status": "True"}])], export_message=encode_export(result))


def test_the_first_version_has_nothing_to_beat_and_is_published():
    observed = ModelObservation(search=SEARCH, export_jobs=[export_job(1, [{"type": "Complete", "status": "True"}])],
                                export_message=encode_export(ExportResult({"h/acc": 0.61}, output="ef" * 32)))

    plan = plan_model(model(), observed, SETTINGS, NOW)

    assert plan.status["version"] == 1 and plan.status["recipe"] == RECIPE and plan.status["candidate"] is None
    promoted = find(plan.status["conditions"], "Promoted")
    assert (promoted["status"], promoted["reason"]) == ("True", "FirstVersion")
    assert plan.status["promotion"]["promoted"] is True and "nothing to compare with" in plan.status["promotion"]["message"]
    assert [e.reason for e in plan.events] == ["Exported", "Promoted"]


def test_a_gated_search_exports_the_next_version_beside_the_published_one():
    plan = plan_model(model(2, dict(V1)), ModelObservation(search=SEARCH), SETTINGS, NOW)

    job = next(o for o in plan.create if o["kind"] == "Job")
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--published") + 1] == f"{SETTINGS.pvc_root}/out/jp/v1"
    assert "compares it with the published version 1" in plan.events[0].message

    always = {**SEARCH, "spec": {**SEARCH["spec"], "storage": {"output": {"uri": "pvc://out/jp", "promotion": {"policy": "always"}}}}}
    plan = plan_model(model(2, dict(V1)), ModelObservation(search=always), SETTINGS, NOW)
    assert "--published" not in next(o for o in plan.create if o["kind"] == "Job")["spec"]["template"]["spec"]["containers"][0]["command"]


def test_a_version_that_does_not_pass_the_gate_is_held_back_and_the_served_one_stays():
    ready = plan_model(model(1, dict(V1), engine="vllm"), ModelObservation(search=SEARCH), SETTINGS, NOW)
    deployment, service = (o for o in ready.create if o["kind"] in ("Deployment", "Service"))
    deployment["metadata"]["resourceVersion"] = "7"
    body, observed = finished_export(2, ExportResult({"h/acc": 0.508}, output="ab" * 32, gate=gate(False, 0.41)), engine="vllm")
    observed.deployment, observed.service = deployment, service

    plan = plan_model(body, observed, SETTINGS, NOW)

    status = plan.status
    assert (status["phase"], status.get("version", 1), status.get("outputUri", "pvc://out/jp/v1")) == ("Ready", 1, "pvc://out/jp/v1")
    assert "version" not in status and "outputUri" not in status  # the published version's fields are left alone
    assert status["candidate"]["version"] == 2 and status["candidate"]["outputUri"] == "pvc://out/jp/v2"
    assert status["candidate"]["recipe"] == RECIPE and status["candidate"]["scores"]["heldOut"] == {"h/acc": "0.508"}
    decision = status["promotion"]
    assert (decision["version"], decision["publishedVersion"], decision["promoted"]) == (2, 1, False)
    assert decision["test"] == {"test": "mcnemar", "items": 250, "baseline": "0.5", "candidate": "0.508", "pValue": "0.41",
                                "discordant": [9, 7]}
    assert decision["publishedHeldOut"] == {"h/acc": "0.5"}
    promoted = find(status["conditions"], "Promoted")
    assert (promoted["status"], promoted["reason"]) == ("False", "NotPromoted")
    assert promoted["message"] == "held-out +0.008, p = 0.41 ≥ 0.05: kept version 1"
    (event,) = [e for e in plan.events if e.reason == "NotPromoted"]
    assert "p = 0.41 ≥ 0.05: kept version 1" in event.message and "evomerge.dev/promote=2" in event.message
    assert plan.replace == [] and not [o for o in plan.create if o["kind"] == "Deployment"]  # the served Deployment stays

    judged = {**body, "status": {**body["status"], **status}}
    again = plan_model(judged, ModelObservation(search=SEARCH, deployment=deployment, service=service), SETTINGS, NOW)
    assert again.create == [] and again.replace == [] and again.events == []  # decided: no second export


def test_a_version_that_passes_the_gate_is_published_and_rolls_the_deployment():
    ready = plan_model(model(1, dict(V1), engine="vllm"), ModelObservation(search=SEARCH), SETTINGS, NOW)
    deployment, service = (o for o in ready.create if o["kind"] in ("Deployment", "Service"))
    deployment["metadata"]["resourceVersion"] = "7"
    body, observed = finished_export(2, ExportResult({"h/acc": 0.6}, output="ab" * 32, gate=gate(True, 0.003, candidate=0.6)), engine="vllm")
    observed.deployment, observed.service = deployment, service

    plan = plan_model(body, observed, SETTINGS, NOW)

    assert plan.status["version"] == 2 and plan.status["outputUri"] == "pvc://out/jp/v2" and plan.status["candidate"] is None
    promoted = find(plan.status["conditions"], "Promoted")
    assert (promoted["status"], promoted["reason"]) == ("True", "Improved")
    assert promoted["message"].endswith("p = 0.003 < 0.05: version 2 replaces version 1")
    (rolled,) = plan.replace
    assert rolled["spec"]["template"]["metadata"]["annotations"]["evomerge.dev/version"] == "2"


def test_a_held_back_candidate_is_promoted_by_hand_with_the_annotation_naming_its_version():
    body, observed = finished_export(2, ExportResult({"h/acc": 0.508}, output="ab" * 32, gate=gate(False, 0.41)))
    held_back = {**body, "status": {**body["status"], **plan_model(body, observed, SETTINGS, NOW).status}}

    stale = {**held_back, "metadata": {**held_back["metadata"], "annotations": {"evomerge.dev/promote": "5"}}}
    assert "version" not in plan_model(stale, ModelObservation(search=SEARCH), SETTINGS, NOW).status

    annotated = {**held_back, "metadata": {**held_back["metadata"], "annotations": {"evomerge.dev/promote": "2"}}}
    plan = plan_model(annotated, ModelObservation(search=SEARCH), SETTINGS, NOW)

    assert plan.status["version"] == 2 and plan.status["outputUri"] == "pvc://out/jp/v2" and plan.status["candidate"] is None
    assert plan.status["scores"]["heldOut"] == {"h/acc": "0.508"} and plan.status["outputSha256"] == "ab" * 32
    assert plan.status["promotion"]["reason"] == "PromotedByHand" and plan.status["promotion"]["promoted"] is True
    assert find(plan.status["conditions"], "Promoted")["reason"] == "PromotedByHand"
    assert [e.reason for e in plan.events] == ["Promoted"] and "version 2 replaces version 1" in plan.events[0].message


def test_gate_verdicts_round_trip_through_the_termination_message():
    result = ExportResult({"h/acc": 0.508}, {f"expert-{i}": "f" * 64 for i in range(40)}, output="e" * 64, gate=gate(False, 0.41))

    message = encode_export(result)

    assert len(message.encode()) <= 4096
    decoded = decode_export(message)
    assert decoded.gate == result.gate and decoded.held_out == result.held_out and decoded.output == result.output
