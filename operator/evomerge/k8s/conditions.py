"""metav1.Condition lists: set a condition, keeping its lastTransitionTime unless its status changes."""

from __future__ import annotations

import datetime
from typing import Any

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
PROMOTED = "Promoted"  # a MergedModel's: whether its newest version replaced the published one


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
    """`current` with `updates` applied by type; a transition time moves only when the status flips."""
    by_type = {c["type"]: dict(c) for c in current}
    for update in updates:
        previous = by_type.get(update["type"])
        merged = dict(update)
        if previous is not None and previous.get("status") == update["status"] and previous.get("lastTransitionTime"):
            merged["lastTransitionTime"] = previous["lastTransitionTime"]
        else:
            merged["lastTransitionTime"] = now
        by_type[update["type"]] = merged
    order = [READY, PROGRESSING, DEGRADED, PROMOTED]
    return sorted(by_type.values(), key=lambda c: (order.index(c["type"]) if c["type"] in order else len(order), c["type"]))


def find(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)
