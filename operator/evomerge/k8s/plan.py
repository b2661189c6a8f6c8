"""What a reconcile decided, as data: objects to create, replace, patch and delete, a status, events."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from .client import ApiError, Conflict, Kube

log = logging.getLogger(__name__)


@dataclass
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Plan:
    create: list[dict[str, Any]] = field(default_factory=list)
    replace: list[dict[str, Any]] = field(default_factory=list)
    patch: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (kind, name, merge patch)
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


class EventQueue:
    """Posts Events from a thread of its own: they inform people, so they wait behind the reconciles."""

    def __init__(self, kube: Kube, component: str):
        self.kube, self.component = kube, component
        self._queue: queue.Queue[tuple[dict[str, Any], Event] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="evomerge-events", daemon=True)
        self._thread.start()

    def put(self, owner: dict[str, Any], event: Event) -> None:
        self._queue.put((owner, event))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            owner, event = item
            try:
                self.kube.post_event(owner, event.type, event.reason, event.message, self.component)
            except ApiError as error:
                log.warning("event %s on %s/%s not posted: %s", event.reason, owner["metadata"].get("namespace"),
                            owner["metadata"]["name"], error)


def apply(kube: Kube, owner: dict[str, Any], plan: Plan, component: str, events: EventQueue | None = None) -> list[dict[str, Any]]:
    """Carry a plan out in the owner's namespace; creating what exists already is not an error (idempotence).

    Returns the objects created and replaced, as the API server stored them (so a caller may cache them).
    """
    meta = owner["metadata"]
    namespace = meta["namespace"]
    stored: list[dict[str, Any]] = []
    for kind, name in plan.delete:
        kube.delete(kind, namespace, name)
    for obj in plan.create:
        try:
            stored.append(kube.create(obj))
        except Conflict:
            log.debug("%s %s/%s exists already", obj["kind"], namespace, obj["metadata"]["name"])
    for obj in plan.replace:
        stored.append(kube.replace(obj))
    for kind, name, patch in plan.patch:
        kube.patch(kind, namespace, name, patch)
    current = owner.get("status") or {}
    if any(current.get(key) != value for key, value in plan.status.items()):  # a no-op patch is a wasted request
        kube.patch_status(owner["kind"], namespace, meta["name"], plan.status)
    for event in plan.events:
        if events is not None:
            events.put(owner, event)
        else:
            kube.post_event(owner, event.type, event.reason, event.message, component)
    return stored
