"""MergeSearch reconciliation: from the search and what exists now, the children and status it should have.

`plan_search` is pure (a body and an observation in, a plan out) and carries all the decisions; `reconcile`
observes through the client, plans, and applies. The cycle is level-based: any reconcile of any search,
whatever triggered it, converges on the same state.

Epochs: the first reconcile starts epoch 1. A change to what is searched (the experts — listed or selected
Expert resources — the merge, the search or the objectives) starts the next epoch, seeded with the elite
found so far. A change to how it runs (evaluation, storage, heldOut) restarts the current epoch's
controller, which resumes from its history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..merge.recipe import MergeRecipe
from ..spec.base import GROUP_VERSION
from ..spec.expert import Expert
from ..spec.loading import SpecError, validate_document
from ..spec.merge_search import ExpertSource, MergeSearch, MergeSearchSpec
from .client import ApiError, Kube
from .conditions import DEGRADED, HISTORY_LOST, PROGRESSING, READY, condition, find, merge_conditions, now_iso
from .jobs import ACTIVE, FAILED, SUCCEEDED, cause, job_state, pod_selector, stuck_reason, termination_message
from .naming import (
    CANDIDATES_ANNOTATION,
    CONTROLLER,
    KUEUE_QUEUE_LABEL,
    SEARCH_LABEL,
    SEARCH_UID_LABEL,
    epoch_configmap_name,
    owner_reference,
    selector,
)
from .plan import Event, EventQueue, Plan, apply, record_refusal
from .promotion import gated
from .reconcile_state import ReconcileState
from .reconcile_expert import compatibility
from .render_model import recipe_lineage, versioned_uri
from .render_search import (
    Epoch,
    controller_job_name,
    input_digest,
    read_epoch_configmap,
    render_controller_job,
    render_epoch_configmap,
    render_namespace_accounts,
)
from .settings import ClusterSettings

COMPONENT = "evomerge-operator"
EPOCH_ANNOTATION = "evomerge.dev/epoch"
INVALID_SPEC = "InvalidSpec"


@dataclass
class SearchObservation:
    """What exists now: the namespace's Experts (when selected), the search's controller Jobs, and more."""

    experts: list[dict[str, Any]] = field(default_factory=list)
    controller_jobs: list[dict[str, Any]] = field(default_factory=list)
    controller_message: str | None = None  # termination message of the failed controller, when one failed
    controller_stuck: tuple[str, str] | None = None  # (reason, message) when its pod cannot start
    epoch_configmap: dict[str, Any] | None = None
    merged_model: dict[str, Any] | None = None
    accounts_ready: bool = False  # the namespace's ServiceAccounts and RoleBinding are known to exist


# ---- pure decisions -------------------------------------------------------------------------------------
def parse_search(search: dict[str, Any]) -> MergeSearchSpec:
    """The spec, validated by the same rules as `evomerge run` (SpecError lists every problem)."""
    meta = search.get("metadata") or {}
    document = {"apiVersion": GROUP_VERSION, "kind": "MergeSearch", "metadata": {"name": meta.get("name", "")}, "spec": search.get("spec")}
    return validate_document(document, f"MergeSearch {meta.get('namespace')}/{meta.get('name')}", MergeSearch).spec


def selected_experts(spec: MergeSearchSpec, experts: list[dict[str, Any]]) -> list[ExpertSource]:
    """Expert resources the selector picks: matching labels, compatible, not deleted, not already listed."""
    if spec.expert_selector is None:
        return []
    listed = {e.name for e in spec.experts}
    chosen = []
    for body in sorted(experts, key=lambda b: b["metadata"]["name"]):
        meta = body["metadata"]
        if meta.get("deletionTimestamp") or meta["name"] in listed:
            continue
        if not spec.expert_selector.matches(meta.get("labels") or {}):
            continue
        try:
            expert = Expert.model_validate({k: body[k] for k in ("metadata", "spec")})
        except ValueError:
            continue
        if not compatibility(expert.spec, [spec])[0]:
            continue
        chosen.append(ExpertSource(name=meta["name"], uri=expert.spec.uri, revision=expert.spec.revision, format=expert.spec.format))
    return chosen


def effective_spec(search: dict[str, Any], spec: MergeSearchSpec, experts: list[dict[str, Any]]) -> MergeSearchSpec:
    """The spec an epoch runs: selected Experts appended to spec.experts, no selector, never suspended."""
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["experts"] = data.get("experts", []) + [e.to_wire() for e in selected_experts(spec, experts)]
    data.pop("expertSelector", None)
    data["suspend"] = False
    meta = search["metadata"]
    document = {"apiVersion": GROUP_VERSION, "kind": "MergeSearch", "metadata": {"name": meta["name"]}, "spec": data}
    source = f"MergeSearch {meta.get('namespace')}/{meta['name']} with its selected Experts"
    return validate_document(document, source, MergeSearch).spec


def plan_search(search: dict[str, Any], observed: SearchObservation, settings: ClusterSettings, now: str) -> Plan:
    meta, status = search["metadata"], dict(search.get("status") or {})
    generation = meta.get("generation")
    plan = Plan()
    try:
        spec = parse_search(search)
        effective = effective_spec(search, spec, observed.experts)
    except SpecError as error:
        return _invalid(search, status, observed, error, now)

    digest = input_digest(effective)
    epoch_number = int(status.get("epoch") or 0)
    phase = status.get("phase")
    # Read from Ready: Degraded may since tell of a request the API server refused (api_failures.py).
    invalid_before = (find(status.get("conditions"), READY) or {}).get("reason") == INVALID_SPEC
    if epoch_number == 0 or status.get("inputDigest") != digest:
        return _new_epoch(search, status, spec, effective, observed, settings, now)

    epoch = _current_epoch(epoch_number, effective, observed.epoch_configmap, status)
    name = controller_job_name(meta["name"], epoch)
    jobs = {j["metadata"]["name"]: j for j in observed.controller_jobs}
    plan.delete += [("Job", other) for other in jobs if other != name]
    desired_configmap = render_epoch_configmap(search, epoch)
    if observed.epoch_configmap is None:
        plan.create.append(desired_configmap)
    elif (observed.epoch_configmap.get("data") or {}) != desired_configmap["data"]:
        plan.replace.append({**desired_configmap, "metadata": {**desired_configmap["metadata"],
                                                               "resourceVersion": observed.epoch_configmap["metadata"]["resourceVersion"]}})

    if phase == "Succeeded" and not invalid_before:
        plan.status = _status(status, generation, now, phase="Succeeded", ready=(True, "Succeeded", _success_message(status)),
                              progressing=(False, "Finished", status.get("stopReason") or "the search finished"))
        _publish(search, spec, effective, status, observed, plan)
        return plan
    if phase == "Failed" and status.get("controllerJob") == name and not invalid_before:
        plan.status = _status(status, generation, now, phase="Failed", ready=(False, "SearchFailed", _degraded_message(status)),
                              progressing=(False, "SearchFailed", "edit the spec to retry"),
                              degraded=(True, "SearchFailed", _degraded_message(status)))
        return plan
    if spec.suspend:
        plan.delete += [("Job", name)] if name in jobs else []
        plan.status = _status(status, generation, now, phase="Suspended", ready=(False, "Suspended", "spec.suspend is true"),
                              progressing=(False, "Suspended", "set spec.suspend to false to resume from the history"))
        if phase != "Suspended":
            plan.events.append(Event("Normal", "Suspended", f"stopped controller Job {name}; its evaluation Jobs go with it"))
        return plan

    job = jobs.get(name)
    if job is None:
        plan.create += [*_accounts(meta["namespace"], observed, settings), render_controller_job(search, epoch, settings)]
        previous = status.get("controllerJob")
        if phase == "Suspended":
            plan.events.append(Event("Normal", "Resumed", f"controller Job {name} resumes the search from its history"))
        elif phase == "Failed":
            plan.events.append(Event("Normal", "Retrying", f"the spec changed; controller Job {name} retries the search"))
        elif previous and previous != name:
            plan.events.append(Event("Normal", "Reconfigured", f"controller Job {name} replaces {previous}; the search resumes from its history"))
        _running(plan, status, generation, now, name, "created", {"controllerStarts": None})
        return plan
    state = job_state(job)
    starts = int(status.get("controllerStarts") or 0)
    if state.phase == ACTIVE and observed.controller_stuck:
        _stuck(plan, status, generation, now, name, *observed.controller_stuck)
    elif state.phase == ACTIVE and (job.get("spec") or {}).get("suspend"):
        _queued(plan, status, generation, now, name, ((job["metadata"].get("labels") or {}).get(KUEUE_QUEUE_LABEL) or "?"))
    elif state.phase == ACTIVE and starts and not (job.get("status") or {}).get("ready"):
        # its pod ended (deleted, evicted, crashed) and the next has not started: the search is not running now
        _running(plan, status, generation, now, name, f"restarting ({starts}): the next pod resumes from the history")
    elif state.phase == ACTIVE:
        _running(plan, status, generation, now, name, "running" + _queued_evaluations(status, job))
    elif state.phase == SUCCEEDED:
        status = {**status, "completionTime": status.get("completionTime") or now}
        message = _success_message(status)
        plan.status = _status(status, generation, now, phase="Succeeded", ready=(True, "Succeeded", message),
                              progressing=(False, "Finished", status.get("stopReason") or "the search finished"),
                              extra={"completionTime": status["completionTime"], "controllerJob": name})
        plan.events.append(Event("Normal", "Succeeded", message))
        _publish(search, spec, effective, status, observed, plan)
    elif state.phase == FAILED:
        detail = cause(observed.controller_message or state.message)
        message = f"controller Job {name} failed ({state.reason}): {detail}".rstrip(": ")
        plan.status = _status(status, generation, now, phase="Failed", ready=(False, "SearchFailed", message),
                              progressing=(False, "SearchFailed", "edit the spec to retry"),
                              degraded=(True, "SearchFailed", message),
                              extra={"completionTime": now, "controllerJob": name, "stopReason": message[:512]})
        plan.events.append(Event("Warning", "SearchFailed", message + " — fix the cause, then edit the spec to retry"))
    return plan


def evaluation_failure(job: dict[str, Any], scorer_message: str | None) -> Event:
    """The Warning for a failed evaluation Job: which candidates, why, and what it costs the search."""
    meta = job["metadata"]
    state = job_state(job)
    candidates = (meta.get("annotations") or {}).get(CANDIDATES_ANNOTATION, "").split(",")
    detail = cause(scorer_message or state.message or "no message")[:600]
    hint = {
        "DeadlineExceeded": "raise evaluation.timeoutSeconds or lower candidatesPerJob",
        "BackoffLimitExceeded": "the pod failed on every try: check its logs, resources and node",
        "PodFailurePolicy": "the scorer refused its inputs: fix the spec or the models",
    }.get(state.reason or "", "check the pod's events and logs")
    return Event("Warning", "EvaluationFailed",
                 f"evaluation Job {meta['name']} ({len(candidates)} candidates: {', '.join(candidates)}) failed "
                 f"({state.reason}): {detail} — {hint}; these count against evaluation.maxFailedEvaluations")


def _current_epoch(number: int, effective: MergeSearchSpec, configmap: dict[str, Any] | None, status: dict[str, Any]) -> Epoch:
    if configmap is not None:
        _document, seeds, offsets = read_epoch_configmap(configmap)
    else:  # someone deleted it: the next controller starts this epoch's replay without seeds
        seeds, offsets = [], _offsets(status)
    return Epoch(number, effective, seeds, offsets)


def _new_epoch(search, status, spec, effective, observed, settings, now) -> Plan:
    meta = search["metadata"]
    number = int(status.get("epoch") or 0) + 1
    best = status.get("best") or {}
    seeds = [best["recipe"]] if number > 1 and best.get("recipe") else []
    epoch = Epoch(number, effective, seeds, _offsets(status) if number > 1 else {})
    plan = Plan()
    plan.delete += [("Job", j["metadata"]["name"]) for j in observed.controller_jobs]
    plan.create.append(render_epoch_configmap(search, epoch))
    name = controller_job_name(meta["name"], epoch)
    experts = ", ".join(e.name for e in effective.experts)
    if number == 1:
        why = f"epoch 1 searches merges of {experts}"
    else:
        seeded = f", seeded with the best recipe so far (score {best.get('score')})" if seeds else ""
        why = f"{_what_changed(observed.epoch_configmap, effective)}: epoch {number} starts over {experts}{seeded}"
    extra = {"epoch": number, "inputDigest": input_digest(effective), "startTime": now, "completionTime": None,
             "stopReason": None, "controllerJob": name, "controllerStarts": None, "historyLost": None,
             "epochRound": None, "epochGeneration": None, "queuedEvaluations": None}
    if spec.suspend:
        plan.status = _status(status, meta.get("generation"), now, phase="Suspended",
                              ready=(False, "Suspended", "spec.suspend is true"),
                              progressing=(False, "Suspended", "set spec.suspend to false to start"), extra=extra)
        plan.events.append(Event("Normal", "EpochPrepared", why + " once spec.suspend is false"))
        return plan
    plan.create += [*_accounts(meta["namespace"], observed, settings), render_controller_job(search, epoch, settings)]
    plan.events.append(Event("Normal", "EpochStarted", f"{why} (controller Job {name})"))
    _running(plan, status, meta.get("generation"), now, name, "created", extra)
    return plan


def _what_changed(previous: dict[str, Any] | None, effective: MergeSearchSpec) -> str:
    """What differs from the previous epoch, in the words an event should use."""
    if previous is None:
        return "the searched spec changed"
    before = {e["name"]: e for e in read_epoch_configmap(previous)[0]["spec"].get("experts", [])}
    after = {e.name: e.to_wire() for e in effective.experts}
    parts = [f"+{n}" for n in sorted(set(after) - set(before))] + [f"-{n}" for n in sorted(set(before) - set(after))]
    parts += [f"~{n}" for n in sorted(set(after) & set(before)) if after[n] != before[n]]
    if parts:
        return f"experts changed ({', '.join(parts)})"
    return "the searched spec changed (merge, search or objectives)"


def _accounts(namespace: str, observed: SearchObservation, settings: ClusterSettings) -> list[dict[str, Any]]:
    return [] if observed.accounts_ready else render_namespace_accounts(namespace, settings)


def _offsets(status: dict[str, Any]) -> dict[str, int]:
    return {
        "round": int(status.get("round") or 0),
        "generation": int(status.get("generation") or 0),
        "evaluations": int(status.get("evaluations") or 0),
        "failedEvaluations": int(status.get("failedEvaluations") or 0),
    }


def _invalid(search, status, observed: SearchObservation, error: SpecError, now: str) -> Plan:
    problems = "; ".join(error.problems)
    plan = Plan(delete=[("Job", j["metadata"]["name"]) for j in observed.controller_jobs])
    plan.status = _status(status, search["metadata"].get("generation"), now, phase="Failed",
                          ready=(False, INVALID_SPEC, problems), progressing=(False, INVALID_SPEC, "fix the spec"),
                          degraded=(True, INVALID_SPEC, problems))
    previous = find(status.get("conditions"), DEGRADED) or {}
    if previous.get("reason") != INVALID_SPEC or previous.get("message") != problems[:1024]:
        plan.events.append(Event("Warning", INVALID_SPEC, f"{problems} — fix the spec; nothing runs until then"))
    return plan


def _running(plan: Plan, status, generation, now, name: str, how: str, extra: dict[str, Any] | None = None) -> None:
    extra = {"controllerJob": name, **(extra or {})}
    plan.status = _status(status, generation, now, phase="Running", ready=(False, "Searching", f"controller Job {name} is {how}"),
                          progressing=(True, "Searching", f"controller Job {name} is {how}"), extra=extra)
    if status.get("phase") != "Running" and not any(e.reason in ("EpochStarted", "Resumed", "Reconfigured", "Retrying") for e in plan.events):
        plan.events.append(Event("Normal", "Running", f"controller Job {name} runs the search"))


def _queued(plan: Plan, status, generation, now, name: str, queue: str) -> None:
    """A controller Job Kueue has not admitted yet: a healthy wait (Progressing), not a failure nor a late search."""
    message = f"controller Job {name} waits in Kueue LocalQueue {queue} for admission"
    plan.status = _status(status, generation, now, phase="Queued", ready=(False, "Queued", message),
                          progressing=(True, "Queued", message), extra={"controllerJob": name})
    if status.get("phase") != "Queued":
        plan.events.append(Event("Normal", "Queued", message))


def _queued_evaluations(status: dict[str, Any], job: dict[str, Any]) -> str:
    """What the Running message adds while evaluation Jobs wait for Kueue's admission (the controller counts them in
    status.queuedEvaluations): a search that waits for quota says so rather than look slow."""
    queued = int(status.get("queuedEvaluations") or 0)
    if not queued:
        return ""
    queue = (job["metadata"].get("labels") or {}).get(KUEUE_QUEUE_LABEL) or "?"
    jobs = "1 evaluation Job waits" if queued == 1 else f"{queued} evaluation Jobs wait"
    return f"; {jobs} in Kueue LocalQueue {queue} for admission"


def _stuck(plan: Plan, status, generation, now, name: str, reason: str, message: str) -> None:
    """A controller pod that cannot start is a Degraded search (and one Warning), not a silent wait."""
    plan.status = _status(status, generation, now, phase="Pending", ready=(False, reason, message),
                          progressing=(False, reason, f"controller Job {name} waits for its pod: {message}"),
                          degraded=(True, reason, message), extra={"controllerJob": name})
    if (find(status.get("conditions"), DEGRADED) or {}).get("reason") != reason:
        plan.events.append(Event("Warning", reason, f"{message} — fix it and the search starts by itself"))


def _status(status, generation, now, phase, ready, progressing, degraded=(False, "AsExpected", ""), extra=None) -> dict[str, Any]:
    """The phase and conditions; an epoch whose history was lost (status.historyLost, the controller's) stays Degraded
    with reason HistoryLost until the next epoch clears it, unless something worse degrades it."""
    lost = {**status, **(extra or {})}.get("historyLost")
    if lost and not degraded[0]:
        degraded = (True, HISTORY_LOST, lost)
    updates = [
        condition(READY, ready[0], ready[1], ready[2], generation),
        condition(PROGRESSING, progressing[0], progressing[1], progressing[2], generation),
        condition(DEGRADED, degraded[0], degraded[1], degraded[2], generation),
    ]
    out = {
        "phase": phase,
        "observedGeneration": generation,
        "conditions": merge_conditions(status.get("conditions") or [], updates, now),
    }
    out.update(extra or {})
    return out


def _success_message(status: dict[str, Any]) -> str:
    best = status.get("best") or {}
    value = best.get("value", best.get("score"))
    reason = status.get("stopReason") or "finished"
    found = f"best {value}" if value is not None else "no candidate scored"
    return f"search finished ({reason}): {found} after {status.get('evaluations', 0)} evaluations"


def _degraded_message(status: dict[str, Any]) -> str:
    """Why the search failed, as its last plan said it in Ready (Degraded may since tell of a refused request)."""
    return (find(status.get("conditions"), READY) or {}).get("message") or status.get("stopReason") or "the controller failed"


def _publish(search, spec: MergeSearchSpec, effective: MergeSearchSpec, status: dict[str, Any],
             observed: SearchObservation, plan: Plan) -> None:
    """Create the MergedModel, or give it a new version when this epoch found a different best recipe."""
    meta = search["metadata"]
    best = status.get("best") or {}
    if spec.storage.output is None:
        if status.get("phase") != "Succeeded":
            plan.events.append(Event("Normal", "NotPublished", "spec.storage.output.uri is unset: set it to export the best merge as a MergedModel"))
        return
    if not best.get("recipe"):
        return
    epoch = str(status.get("epoch"))
    existing = observed.merged_model
    if existing is not None:
        owners = [o.get("uid") for o in existing["metadata"].get("ownerReferences") or []]
        if meta["uid"] not in owners:
            plan.events.append(Event("Warning", "MergedModelConflict",
                                     f"MergedModel {meta['name']} exists and belongs to something else: delete it or rename the search"))
            return
        if (existing["metadata"].get("annotations") or {}).get(EPOCH_ANNOTATION) == epoch:
            plan.status["mergedModel"] = meta["name"]
            return
        if existing["spec"].get("recipe") == best["recipe"]:
            plan.patch.append(("MergedModel", meta["name"], {"metadata": {"annotations": {EPOCH_ANNOTATION: epoch}}}))
            plan.status["mergedModel"] = meta["name"]
            return
        version = int(existing["spec"].get("version", 1)) + 1
        plan.patch.append(("MergedModel", meta["name"], {
            "metadata": {"annotations": {EPOCH_ANNOTATION: epoch}},
            "spec": _model_spec(meta["name"], effective, best, spec.storage.output.uri, version),
        }))
        gate = (" — it replaces the published version only if it passes the promotion gate on the heldOut items"
                if gated(effective) else "")
        plan.events.append(Event("Normal", "Published", f"MergedModel {meta['name']} version {version} (score {best.get('score')}){gate}"))
    else:
        plan.create.append({
            "apiVersion": GROUP_VERSION,
            "kind": "MergedModel",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "labels": {SEARCH_LABEL: meta["name"], SEARCH_UID_LABEL: meta["uid"]},
                "annotations": {EPOCH_ANNOTATION: epoch},
                "ownerReferences": [owner_reference(search)],
            },
            "spec": _model_spec(meta["name"], effective, best, spec.storage.output.uri, 1),
        })
        plan.events.append(Event("Normal", "Published", f"MergedModel {meta['name']} version 1 (score {best.get('score')})"))
    plan.status["mergedModel"] = meta["name"]


def _model_spec(search: str, effective: MergeSearchSpec, best: dict[str, Any], output_uri: str, version: int) -> dict[str, Any]:
    recipe = best["recipe"]
    lineage = [entry.to_wire() for entry in recipe_lineage(MergeRecipe.from_dict(recipe), effective)]
    return {
        "search": search,
        "version": version,
        "recipe": recipe,
        "lineage": lineage,
        "scores": {"search": dict(best.get("scores") or {})},
        "outputUri": versioned_uri(output_uri, version),
    }


# ---- I/O: observe and apply ---------------------------------------------------------------------------
# Under a burst (many searches created or edited at once) the API server is the bottleneck, so a reconcile
# sends only the requests its plan can need (benchmarks/operator_latency.py counts them).
ACCOUNT_KINDS = ("ServiceAccount", "RoleBinding")




def _never_reconciled(search: dict[str, Any], spec: MergeSearchSpec | None) -> bool:
    """No status yet and the spec as created: any controller Job of it (from a reconcile whose status patch
    failed) has the very name the plan creates again, so there is nothing to list and delete."""
    status = search.get("status") or {}
    return (not status.get("epoch") and not status.get("controllerJob") and search["metadata"].get("generation") == 1
            and spec is not None and spec.expert_selector is None)


def observe(kube: Kube, search: dict[str, Any], spec: MergeSearchSpec | None, state: ReconcileState) -> SearchObservation:
    meta = search["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    observed = SearchObservation()
    if spec is not None and spec.expert_selector is not None:
        observed.experts = kube.list("Expert", namespace)
    if not _never_reconciled(search, spec):
        observed.controller_jobs = kube.list("Job", namespace, selector({SEARCH_UID_LABEL: uid, "evomerge.dev/component": CONTROLLER}))
    status = search.get("status") or {}
    current = status.get("controllerJob")
    finished = False
    runs = spec is not None and not spec.suspend  # only a running search's plan reads its controller's pods
    for job in observed.controller_jobs:
        if job["metadata"]["name"] == current:
            phase = job_state(job).phase
            finished = phase == SUCCEEDED
            if phase == FAILED and runs:
                pods = kube.list("Pod", namespace, pod_selector(current))
                observed.controller_message = termination_message(pods, CONTROLLER)
            elif phase == ACTIVE and runs and not (job.get("status") or {}).get("ready"):
                observed.controller_stuck = stuck_reason(kube.list("Pod", namespace, pod_selector(current)))
    observed.accounts_ready = namespace in state.accounts_ready
    epoch = int(status.get("epoch") or 0)
    if epoch:
        configmap = epoch_configmap_name(name, epoch)
        cached = state.epoch_configmaps.get(uid)
        if cached is None or cached[0] != configmap:
            cached = (configmap, kube.get("ConfigMap", namespace, configmap))
            state.epoch_configmaps[uid] = cached
        observed.epoch_configmap = cached[1]
    if finished or status.get("phase") == "Succeeded":  # only then is there something to publish
        observed.merged_model = kube.get("MergedModel", namespace, name)
    return observed


def reconcile(kube: Kube, search: dict[str, Any], settings: ClusterSettings, state: ReconcileState,
              events: EventQueue | None = None) -> Plan:
    """Observe, plan, apply — serialised per search, because Job and Expert events reconcile it too."""
    meta = search["metadata"]
    watched = state.watched
    with state.locks.hold(meta["uid"]):
        fresh = search if watched.current(search) else kube.get("MergeSearch", meta["namespace"], meta["name"])
        if fresh is None or fresh["metadata"]["uid"] != meta["uid"] or fresh["metadata"].get("deletionTimestamp"):
            return Plan()
        try:
            spec: MergeSearchSpec | None = parse_search(fresh)
        except SpecError:
            spec = None
        try:
            observed = observe(kube, fresh, spec, state)
            plan = plan_search(fresh, observed, settings, now_iso())
            watched.wrote(meta["uid"], None)  # until the status patch returns its version
            _make_accounts(kube, fresh, plan, state)
            _apply(kube, fresh, plan, events, state)
        except ApiError as error:  # under the lock: the status it records is not older than a concurrent success
            record_refusal(kube, fresh, error, COMPONENT, events, state)
            watched.wrote(meta["uid"], None)  # it may have written the status
            raise
        state.settled(meta["uid"])
        return plan


def _make_accounts(kube: Kube, search: dict[str, Any], plan: Plan, state: ReconcileState) -> None:
    """Take the namespace's accounts out of the plan and make them once: the first plan of a namespace makes
    them while its other searches wait (they would all try, and each refused create is a wasted request)."""
    accounts = [o for o in plan.create if o["kind"] in ACCOUNT_KINDS]
    if not accounts:
        return
    plan.create = [o for o in plan.create if o["kind"] not in ACCOUNT_KINDS]
    namespace = search["metadata"]["namespace"]
    with state.locks.hold(f"namespace/{namespace}"):
        if namespace not in state.accounts_ready:
            apply(kube, search, Plan(create=accounts), COMPONENT)
            state.accounts_ready.add(namespace)


def _apply(kube: Kube, search: dict[str, Any], plan: Plan, events: EventQueue | None, state: ReconcileState) -> None:
    uid = search["metadata"]["uid"]
    stored = apply(kube, search, plan, COMPONENT, events)
    for owner in (o for o in stored if o.get("kind") == "MergeSearch"):  # its status, as written
        state.watched.wrote(uid, owner["metadata"].get("resourceVersion"))
    if any(o["kind"] == "ConfigMap" for o in plan.create + plan.replace):
        written = [o for o in stored if o.get("kind") == "ConfigMap"]
        if written:  # the epoch ConfigMap as the API server stored it: the next reconcile need not read it
            state.epoch_configmaps[uid] = (written[-1]["metadata"]["name"], written[-1])
        else:  # it existed already (a create refused): read it back
            state.epoch_configmaps.pop(uid, None)
