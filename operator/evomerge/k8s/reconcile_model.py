"""MergedModel reconciliation: export each new version, record what the export measured, serve it if asked.

The search reconciler writes a MergedModel's spec (recipe, version, lineage, output location); this one
runs the export Job for `spec.version`, copies its held-out scores and content hashes into status, and
keeps an optional TGI/vLLM Deployment on the exported version (a new version rolls it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ..merge.recipe import MergeRecipe
from ..models.uris import UriError
from ..spec.loading import SpecError
from ..spec.merged_model import MergedModelSpec
from .api_failures import clear_refusal
from .client import ApiError, Kube
from .conditions import DEGRADED, PROGRESSING, READY, condition, merge_conditions, now_iso
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
from .plan import Event, EventQueue, Plan, apply, record_refusal, settled
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
    exported = status.get("version") == spec.version and status.get("phase") == "Ready"
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
        plan.create += [render_export_configmap(model, search_spec), render_export_job(model, search_spec, settings)]
        message = f"export Job {job_name} writes version {spec.version} to {spec.output_uri}"
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
    message = f"version {spec.version} is at {spec.output_uri}"
    _set(plan, status, generation, now, "Ready", (True, "Exported", message), (False, "Exported", message), extra={
        "version": spec.version,
        "outputUri": spec.output_uri,
        "outputSha256": result.output,
        "exportJob": job_name,
        "scores": spec.scores.model_copy(update={"held_out": result.held_out}).to_wire(),  # numbers as strings, as the CRD says
        "lineage": lineage,
    })
    plan.events.append(Event("Normal", "Exported", message))


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


def _set(plan: Plan, status, generation, now, phase, ready, progressing, degraded=(False, "AsExpected", ""), extra=None) -> None:
    updates = [condition(READY, *ready, generation), condition(PROGRESSING, *progressing, generation),
               condition(DEGRADED, *degraded, generation)]
    plan.status.update({"phase": phase, "observedGeneration": generation,
                        "conditions": merge_conditions(status.get("conditions") or [], updates, now), **(extra or {})})


def _warn_once(plan: Plan, status, reason: str, message: str) -> None:
    previous = next((c for c in status.get("conditions") or [] if c.get("type") == DEGRADED), {})
    if previous.get("reason") != reason or previous.get("status") != "True":
        plan.events.append(Event("Warning", reason, message))


# ---- I/O -----------------------------------------------------------------------------------------------
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


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


def reconcile(kube: Kube, model: dict[str, Any], settings: ClusterSettings, events: EventQueue | None = None) -> Plan:
    meta = model["metadata"]
    with _guard:
        lock = _locks.setdefault(meta["uid"], threading.Lock())
    with lock:
        fresh = kube.get("MergedModel", meta["namespace"], meta["name"])
        if fresh is None or fresh["metadata"]["uid"] != meta["uid"] or fresh["metadata"].get("deletionTimestamp"):
            return Plan()
        try:
            plan = plan_model(fresh, observe(kube, fresh), settings, now_iso())
            apply(kube, fresh, plan, COMPONENT, events)
        except ApiError as error:  # under the lock: the status it records is not older than a concurrent success
            record_refusal(kube, fresh, error, COMPONENT, events)
            raise
        settled(meta["uid"])
        return plan

