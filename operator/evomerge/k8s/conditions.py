"""metav1.Condition lists: set a condition, keeping its lastTransitionTime unless its status changes.

Each resource states Ready / Progressing / Degraded (what `kubectl get` and Argo CD's health check read), and
the pair kstatus reads (sigs.k8s.io/cli-utils/pkg/kstatus, used by Flux and `helm --wait`) is derived from them
here, once, so no writer can let the two disagree: `Reconciling` True while work is in progress (a running or
queued search: kstatus InProgress, a healthy wait), `Stalled` True when it cannot go on without a change (an
invalid spec, a pod that cannot start, a failed or suspended search: kstatus Failed, so a waiting sync stops
instead of timing out); both False otherwise (Current: Ready is True). kstatus takes the first True one, so
they are never True together.
"""

from __future__ import annotations

import datetime
from typing import Any

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
PROMOTED = "Promoted"  # a MergedModel's: whether its newest version replaced the published one
RECONCILING = "Reconciling"
STALLED = "Stalled"
HISTORY_LOST = "HistoryLost"  # Degraded's reason (and the controller's Warning) while status.historyLost is set
_ORDER = [READY, PROGRESSING, DEGRADED, PROMOTED, RECONCILING, STALLED]


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def condition(type_: str, status: bool | None, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    """One condition; status None is Unknown (set on the first visit, before anything is observed)."""
    text = "Unknown" if status is None else ("True" if status else "False")
    out: dict[str, Any] = {"type": type_, "status": text, "reason": reason, "message": message[:1024]}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def merge_conditions(current: list[dict[str, Any]], updates: list[dict[str, Any]], now: str) -> list[dict[str, Any]]:
    """`current` with `updates` applied by type, and kstatus' pair derived; a transition time moves only when the
    status flips."""
    by_type = {c["type"]: dict(c) for c in current}
    _apply(by_type, updates, now)
    _apply(by_type, kstatus_conditions(list(by_type.values())), now)
    return sorted(by_type.values(), key=lambda c: (_ORDER.index(c["type"]) if c["type"] in _ORDER else len(_ORDER), c["type"]))


def _apply(by_type: dict[str, dict[str, Any]], updates: list[dict[str, Any]], now: str) -> None:
    for update in updates:
        previous = by_type.get(update["type"])
        merged = dict(update)
        if previous is not None and previous.get("status") == update["status"] and previous.get("lastTransitionTime"):
            merged["lastTransitionTime"] = previous["lastTransitionTime"]
        else:
            merged["lastTransitionTime"] = now
        by_type[update["type"]] = merged


def kstatus_conditions(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reconciling and Stalled as the module docstring says: reconciling while Progressing is True (or, for a
    resource with Ready alone, while Ready is Unknown); stalled when nothing is in progress and it is not Ready —
    kstatus would otherwise read that Ready=False as InProgress and wait for ever (a suspended search, say). None
    before any condition is stated."""
    ready, progressing, degraded = (find(conditions, t) for t in (READY, PROGRESSING, DEGRADED))
    source = progressing or ready
    if source is None:
        return []
    reconciling = progressing["status"] == "True" if progressing is not None else ready["status"] == "Unknown"
    stalled = not reconciling and ready is not None and ready["status"] == "False"
    why = degraded if degraded is not None and degraded["status"] == "True" else ready
    generation = source.get("observedGeneration")
    return [
        condition(RECONCILING, reconciling, source["reason"], source.get("message", ""), generation),
        condition(STALLED, stalled, why["reason"] if stalled else "AsExpected", why.get("message", "") if stalled else "",
                  generation),
    ]


def find(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)
