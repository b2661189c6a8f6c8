"""Expert reconciliation: say whether an Expert can be merged by the searches that select it.

The operator has no model files, so it checks what the resource itself declares (a usable URI; a base model
that matches each selecting search's). The controller checks tensor shapes when an epoch starts.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..models.uris import UriError, parse_uri
from ..spec.expert import Expert, ExpertSpec
from ..spec.merge_search import MergeSearchSpec
from .client import Kube
from .conditions import READY, condition, merge_conditions, now_iso


def _same_model(a: str, b: str) -> bool:
    try:
        return str(parse_uri(a)) == str(parse_uri(b))
    except UriError:
        return a == b


def compatibility(expert: ExpertSpec, searches: Sequence[MergeSearchSpec], names: Sequence[str] = ()) -> tuple[bool, str, str]:
    """(compatible, reason, message) of an Expert against the specs of the searches selecting it."""
    try:
        parse_uri(expert.uri)
    except UriError as error:
        return False, "InvalidUri", f"spec.uri: {error}"
    for index, search in enumerate(searches):
        base = search.base_model.uri if search.base_model else None
        if expert.base_model and base and not _same_model(expert.base_model, base):
            who = f"MergeSearch {names[index]}" if index < len(names) else "a selecting MergeSearch"
            return False, "BaseModelMismatch", (
                f"tuned from {expert.base_model}, but {who} merges onto {base} — "
                "experts must share the search's base model; fix spec.baseModel or the labels"
            )
    return True, "Compatible", "the URI is usable and the base model matches every selecting search"


def plan_expert_status(expert: dict[str, Any], searches: list[dict[str, Any]], now: str) -> dict[str, Any]:
    """The status patch of one Expert given the MergeSearches of its namespace."""
    parsed = Expert.model_validate({k: expert[k] for k in ("metadata", "spec")})
    labels = expert["metadata"].get("labels") or {}
    selecting: list[MergeSearchSpec] = []
    names: list[str] = []
    for body in searches:
        try:
            spec = MergeSearchSpec.model_validate(body.get("spec") or {})
        except ValueError:
            continue
        if spec.expert_selector is not None and spec.expert_selector.matches(labels):
            selecting.append(spec)
            names.append(body["metadata"]["name"])
    ok, reason, message = compatibility(parsed.spec, selecting, names)
    generation = expert["metadata"].get("generation")
    current = (expert.get("status") or {}).get("conditions") or []
    return {
        "compatible": ok,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "conditions": merge_conditions(current, [condition(READY, ok, reason, message, generation)], now),
    }


def selecting_searches(searches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Searches with an expertSelector: an Expert appearing, changing or going may change their expert set."""
    return [s for s in searches if (s.get("spec") or {}).get("expertSelector") is not None]


def update_status(kube: Kube, expert: dict[str, Any], searches: list[dict[str, Any]]) -> None:
    """Patch the Expert's status when what it says changed (no write otherwise)."""
    meta = expert["metadata"]
    status = plan_expert_status(expert, searches, now_iso())
    current = expert.get("status") or {}
    if any(current.get(k) != status[k] for k in ("compatible", "reason", "message", "observedGeneration")):
        kube.patch_status("Expert", meta["namespace"], meta["name"], status)
        if not status["compatible"] and (current.get("reason"), current.get("message")) != (status["reason"], status["message"]):
            kube.post_event(expert, "Warning", status["reason"], status["message"], "evomerge-operator")


def reconcile_expert(kube: Kube, expert: dict[str, Any]) -> list[dict[str, Any]]:
    """Write the Expert's status; return the searches whose expert set it may change (to reconcile them)."""
    meta = expert["metadata"]
    searches = kube.list("MergeSearch", meta["namespace"])
    current = None if meta.get("deletionTimestamp") else kube.get("Expert", meta["namespace"], meta["name"])
    if current is not None:
        update_status(kube, current, searches)
    return selecting_searches(searches)


def refresh_selected(kube: Kube, namespace: str) -> None:
    """Re-judge every Expert of a namespace: a search's selector or base model changed what they are matched with."""
    searches = kube.list("MergeSearch", namespace)
    for expert in kube.list("Expert", namespace):
        update_status(kube, expert, searches)
