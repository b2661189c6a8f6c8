"""MergedModel reconciliation: export each new version, promote it or hold it back, serve the published one.

The search reconciler writes a MergedModel's spec (recipe, version, lineage, output location); this one
runs the export Job for `spec.version`, which also judges it against the published version (promotion.py).
A promoted version becomes status.version with its held-out scores and content hashes, and an optional
TGI/vLLM Deployment rolls to it; a version held back waits in status.candidate, the published one and its
Deployment untouched, until the annotation evomerge.dev/promote=<its version> publishes it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..merge.recipe import MergeRecipe
from ..models.uris import UriError
from ..spec.loading import SpecError
from ..spec.merged_model import PROMOTE_ANNOTATION, MergedModelSpec, PairedTestResult, PromotionDecision
from .api_failures import clear_refusal
from .client import ApiError, Kube
from .conditions import DEGRADED, PROGRESSING, PROMOTED, READY, condition, merge_conditions, now_iso
from .jobs import ACTIVE, FAILED, job_state, pod_selector, termination_message
from .messages import decode_export
from .naming import (
    EXPORT,
    MODEL_LABEL,
    TEMPLATE_HASH_ANNOTATION,
    export_job_name,
    selector,
    serving_name,
)
from .plan import Event, EventQueue, Plan, apply, record_refusal
from .promotion import BY_HAND, FIRST_VERSION, IMPROVED, POLICY_ALWAYS, GateResult, gated
from .reconcile_state import ReconcileState
from .reconcile_search import parse_search
from .render_model import render_export_configmap, render_export_job, render_serving_deployment, render_serving_service
from .render_pods import kept_output_path
from .settings import ClusterSettings

COMPONENT = "evomerge-operator"


@dataclass
class ModelObservation:
    search: dict[str, Any] | None = None
    export_jobs: list[dict[str, Any]] = field(default_factory=list)
    export_message: str | None = None  # what the current version's export container said, once it ended
    deployment: dict[str, Any] | None = None
    service: dict[str, Any] | None = None


def plan_model(model: dict[str, Any], observed: ModelObservation, settings: ClusterSettings, now: str) -> Plan:
    meta, status = model["metadata"], dict(model.get("status") or {})
    generation = meta.get("generation")
    plan = Plan()
    spec, message = _valid_spec(model, settings)
    if spec is None:
        _set(plan, status, generation, now, "Failed", (False, "InvalidSpec", message), (False, "InvalidSpec", message),
             (True, "InvalidSpec", message))
        _warn_once(plan, status, "InvalidSpec", message)
        return plan
    job_name = export_job_name(meta["name"], spec.version)
    plan.delete += [("Job", j["metadata"]["name"]) for j in observed.export_jobs if j["metadata"]["name"] != job_name]
    if _promoted_by_hand(model, status):
        _promote_candidate(status, generation, now, plan)
        status = {**status, **plan.status}
    judged = (status.get("version"), (status.get("candidate") or {}).get("version"))
    exported = spec.version in judged and status.get("phase") == "Ready"
    if not exported:
        _export(model, spec, observed, settings, now, job_name, plan, status)
        exported = plan.status.get("phase") == "Ready"
        status = {**status, **plan.status}
    if exported:
        _serve(model, spec, status, observed, settings, now, plan)
        if status.get("observedGeneration") != generation:  # e.g. only spec.serving changed
            plan.status["observedGeneration"] = generation
        clear_refusal(plan.status, status, generation, now)
    return plan


def _valid_spec(model: dict[str, Any], settings: ClusterSettings) -> tuple[MergedModelSpec | None, str]:
    """The spec, or None and what is wrong with it: its fields, an output no pod keeps, a recipe that is none."""
    try:
        spec = MergedModelSpec.model_validate(model["spec"])
    except ValueError as error:
        return None, f"spec: {error}"
    try:
        kept_output_path(spec.output_uri, settings)
    except UriError as error:
        return None, f"spec.outputUri: {error}"
    try:
        MergeRecipe.from_dict(spec.recipe)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return None, f"spec.recipe is not a merge recipe ({type(error).__name__}: {error}) — it needs method, experts with params"
    return spec, ""


def _export(model, spec: MergedModelSpec, observed: ModelObservation, settings, now, job_name: str, plan: Plan, status) -> None:
    generation = model["metadata"].get("generation")
    job = next((j for j in observed.export_jobs if j["metadata"]["name"] == job_name), None)
    if job is None:
        if observed.search is None:
            message = f"MergeSearch {spec.search} is gone: the export needs its heldOut objectives and evaluation settings"
            _set(plan, status, generation, now, "Failed", (False, "SearchMissing", message), (False, "SearchMissing", message),
                 (True, "SearchMissing", message))
            _warn_once(plan, status, "SearchMissing", message)
            return
        try:
            search_spec = parse_search(observed.search)
        except SpecError as error:
            message = f"MergeSearch {spec.search} is invalid, so its heldOut and evaluation settings are unknown: {'; '.join(error.problems)}"
            _set(plan, status, generation, now, "Failed", (False, "SearchInvalid", message), (False, "SearchInvalid", message),
                 (True, "SearchInvalid", message))
            _warn_once(plan, status, "SearchInvalid", message)
            return
        published = status.get("outputUri") if gated(search_spec) and status.get("version") not in (None, spec.version) else None
        plan.create += [render_export_configmap(model, search_spec), render_export_job(model, search_spec, settings, published)]
        message = f"export Job {job_name} writes version {spec.version} to {spec.output_uri}"
        if published:
            message += f" and compares it with the published version {status.get('version')} on the heldOut items"
        _set(plan, status, generation, now, "Exporting", (False, "Exporting", message), (True, "Exporting", message),
             extra={"exportJob": job_name})
        plan.events.append(Event("Normal", "ExportStarted", message))
        return
    state = job_state(job)
    if state.phase == ACTIVE:
        message = f"export Job {job_name} is writing version {spec.version}"
        _set(plan, status, generation, now, "Exporting", (False, "Exporting", message), (True, "Exporting", message),
             extra={"exportJob": job_name})
        return
    result = decode_export(observed.export_message)
    if state.phase == FAILED or result.error is not None:
        detail = result.error or state.message or ""
        message = f"export Job {job_name} failed ({state.reason or 'NoResult'}): {detail}".rstrip(": ")
        _set(plan, status, generation, now, "Failed", (False, "ExportFailed", message), (False, "ExportFailed", message),
             (True, "ExportFailed", message), extra={"exportJob": job_name})
        _warn_once(plan, status, "ExportFailed", message + " — fix the cause, then delete the Job to retry")
        return
    if result.output is None:
        message = (f"version {spec.version} is lost: export Job {job_name} ended, but no checkpoint was read back at "
                   f"{spec.output_uri} — check that the claim is bound and writable, then delete the Job to export again")
        _set(plan, status, generation, now, "Failed", (False, "OutputLost", message), (False, "OutputLost", message),
             (True, "OutputLost", message), extra={"exportJob": job_name})
        _warn_once(plan, status, "OutputLost", message)
        return
    lineage = [{**entry.to_wire(), **({"sha256": result.hashes[entry.name]} if entry.name in result.hashes else {})}
               for entry in spec.lineage]
    version = {
        "version": spec.version,
        "outputUri": spec.output_uri,
        "outputSha256": result.output,
        "recipe": spec.recipe,
        "scores": spec.scores.model_copy(update={"held_out": result.held_out}).to_wire(),  # numbers as strings, as the CRD says
        "lineage": lineage,
    }
    plan.events.append(Event("Normal", "Exported", f"version {spec.version} is at {spec.output_uri}"))
    published = status.get("version")
    gate = result.gate
    if gate is not None and not gate.promoted:
        message = f"{gate.message}: kept version {published}"
        hint = f"kubectl annotate mergedmodel {model['metadata']['name']} {PROMOTE_ANNOTATION}={spec.version} publishes it anyway"
        _set(plan, status, generation, now, "Ready", (True, gate.reason, f"version {published} is published; version {spec.version} {message}"),
             (False, gate.reason, message), promoted=(False, gate.reason, message), extra={
                 "exportJob": job_name, "candidate": version,
                 "promotion": _decision(spec.version, published, gate, f"{message} ({hint})")})
        plan.events.append(Event("Normal", gate.reason, f"version {spec.version}: {message} — {hint}"))
        return
    if published is None:
        reason, message = FIRST_VERSION, f"version {spec.version} is the first: nothing to compare with"
    elif gate is None:
        reason, message = POLICY_ALWAYS, f"promotion policy always: version {spec.version} replaces version {published}"
    else:
        reason, message = IMPROVED, f"{gate.message}: version {spec.version} replaces version {published}"
    ready = f"version {spec.version} is at {spec.output_uri}"
    _set(plan, status, generation, now, "Ready", (True, "Exported", ready), (False, "Exported", ready),
         promoted=(True, reason, message),
         extra={**version, "exportJob": job_name, "candidate": None,
                "promotion": _decision(spec.version, published, gate, message, reason)})
    plan.events.append(Event("Normal", "Promoted", message))


def _decision(version: int, published: int | None, gate: GateResult | None, message: str, reason: str | None = None) -> dict[str, Any]:
    test = PairedTestResult.model_validate(gate.test.to_dict()) if gate is not None and gate.test is not None else None
    return PromotionDecision(
        version=version, published_version=published, promoted=gate is None or gate.promoted or reason == BY_HAND,
        reason=reason or (gate.reason if gate is not None else FIRST_VERSION), message=message, test=test,
        published_held_out=gate.baseline if gate is not None else {},
    ).to_wire()


def _promoted_by_hand(model: dict[str, Any], status: dict[str, Any]) -> bool:
    """The annotation names the held-back candidate's version (naming a version keeps a stale annotation from
    publishing a later candidate nobody looked at)."""
    wanted = (model["metadata"].get("annotations") or {}).get(PROMOTE_ANNOTATION)
    candidate = status.get("candidate") or {}
    return wanted is not None and candidate.get("version") is not None and wanted.strip() == str(candidate["version"])


def _promote_candidate(status: dict[str, Any], generation, now, plan: Plan) -> None:
    candidate, published = status["candidate"], status.get("version")
    message = (f"promoted by hand ({PROMOTE_ANNOTATION}={candidate['version']}): version {candidate['version']} "
               f"replaces version {published}")
    previous = status.get("promotion") or {}
    decision = {**previous, "version": candidate["version"], "publishedVersion": published, "promoted": True,
                "reason": BY_HAND, "message": message}
    ready = f"version {candidate['version']} is at {candidate['outputUri']}"
    _set(plan, status, generation, now, "Ready", (True, "Exported", ready), (False, "Exported", ready),
         promoted=(True, BY_HAND, message), extra={**candidate, "candidate": None, "promotion": decision})
    plan.events.append(Event("Normal", "Promoted", message))


def _serve(model, spec: MergedModelSpec, status: dict[str, Any], observed: ModelObservation, settings, now, plan: Plan) -> None:
    name = serving_name(model["metadata"]["name"])
    if not spec.serving.enabled:
        plan.delete += [("Deployment", name)] if observed.deployment else []
        plan.delete += [("Service", name)] if observed.service else []
        if status.get("endpoint"):
            plan.status["endpoint"] = None
        return
    served = {**model, "status": status}
    deployment = render_serving_deployment(served, settings)
    if observed.deployment is None:
        plan.create.append(deployment)
        plan.events.append(Event("Normal", "Serving", f"Deployment {name} serves version {status.get('version')}"))
    elif (observed.deployment["metadata"].get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION) != deployment["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]:
        deployment["metadata"]["resourceVersion"] = observed.deployment["metadata"]["resourceVersion"]
        plan.replace.append(deployment)
        plan.events.append(Event("Normal", "ServingRolled", f"Deployment {name} rolls to version {status.get('version')}"))
    if observed.service is None:
        plan.create.append(render_serving_service(model))
    endpoint = f"http://{name}.{model['metadata']['namespace']}.svc"
    if status.get("endpoint") != endpoint:
        plan.status["endpoint"] = endpoint


def _set(plan: Plan, status, generation, now, phase, ready, progressing, degraded=(False, "AsExpected", ""), extra=None,
         promoted=None) -> None:
    updates = [condition(READY, *ready, generation), condition(PROGRESSING, *progressing, generation),
               condition(DEGRADED, *degraded, generation)]
    if promoted is not None:
        updates.append(condition(PROMOTED, *promoted, generation))
    plan.status.update({"phase": phase, "observedGeneration": generation,
                        "conditions": merge_conditions(status.get("conditions") or [], updates, now), **(extra or {})})


def _warn_once(plan: Plan, status, reason: str, message: str) -> None:
    previous = next((c for c in status.get("conditions") or [] if c.get("type") == DEGRADED), {})
    if previous.get("reason") != reason or previous.get("status") != "True":
        plan.events.append(Event("Warning", reason, message))


# ---- I/O -----------------------------------------------------------------------------------------------
def observe(kube: Kube, model: dict[str, Any]) -> ModelObservation:
    meta = model["metadata"]
    namespace = meta["namespace"]
    observed = ModelObservation()
    search_name = (model.get("spec") or {}).get("search")
    if search_name:
        observed.search = kube.get("MergeSearch", namespace, search_name)
    observed.export_jobs = kube.list("Job", namespace, selector({MODEL_LABEL: meta["name"], "evomerge.dev/component": EXPORT}))
    version = (model.get("spec") or {}).get("version")
    current = export_job_name(meta["name"], int(version or 1))
    for job in observed.export_jobs:
        if job["metadata"]["name"] == current and job_state(job).phase != ACTIVE:
            observed.export_message = termination_message(kube.list("Pod", namespace, pod_selector(current)), "export")
    if (model.get("status") or {}).get("phase") == "Ready" or observed.export_message is not None:
        observed.deployment = kube.get("Deployment", namespace, serving_name(meta["name"]))
        observed.service = kube.get("Service", namespace, serving_name(meta["name"]))
    return observed


def reconcile(kube: Kube, model: dict[str, Any], settings: ClusterSettings, state: ReconcileState,
              events: EventQueue | None = None) -> Plan:
    meta = model["metadata"]
    with state.locks.hold(meta["uid"]):
        fresh = kube.get("MergedModel", meta["namespace"], meta["name"])
        if fresh is None or fresh["metadata"]["uid"] != meta["uid"] or fresh["metadata"].get("deletionTimestamp"):
            return Plan()
        try:
            plan = plan_model(fresh, observe(kube, fresh), settings, now_iso())
            apply(kube, fresh, plan, COMPONENT, events)
        except ApiError as error:  # under the lock: the status it records is not older than a concurrent success
            record_refusal(kube, fresh, error, COMPONENT, events, state)
            raise
        state.settled(meta["uid"])
        return plan

