"""What a reconcile decided, as data: objects to create, replace, patch and delete, a status, events;
and carrying it out, or recording on the object why the API server refused it."""

from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from .api_failures import Refusal, classify, degraded_status, is_news, requesting
from .client import ApiError, Conflict, Kube
from .conditions import now_iso
from .reconcile_state import ReconcileState

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
    """Posts Events from a thread of its own: they inform people, so they wait behind the reconciles.

    While a burst of reconciles is in flight (`burst` or more inside `deferring`), an Event waits up to
    `patience` seconds: then the API server's CPU is what every reconcile queues for, and an Event posted
    meanwhile delays the next status. A few searches at a time never wait.
    """

    def __init__(self, kube: Kube, component: str, patience: float = 5.0, burst: int = 8):
        self.kube, self.component, self.patience, self.burst = kube, component, patience, burst
        self._queue: queue.Queue[tuple[dict[str, Any], Event, float] | None] = queue.Queue()
        self._idle = threading.Condition()
        self._in_flight = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="evomerge-events", daemon=True)
        self._thread.start()

    def put(self, owner: dict[str, Any], event: Event) -> None:
        self._queue.put((owner, event, time.monotonic()))

    @contextmanager
    def deferring(self) -> Iterator[None]:
        """Around a reconcile: under a burst, queued Events wait for it to pass (or for their patience to run out)."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def close(self) -> None:
        with self._idle:
            self._closing = True
            self._idle.notify_all()
        self._queue.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            owner, event, queued = item
            with self._idle:
                self._idle.wait_for(lambda: self._closing or self._in_flight < self.burst,
                                    timeout=max(0.0, queued + self.patience - time.monotonic()))
            try:
                self.kube.post_event(owner, event.type, event.reason, event.message, self.component)
            except ApiError as error:
                log.warning("event %s on %s/%s not posted: %s", event.reason, owner["metadata"].get("namespace"),
                            owner["metadata"]["name"], error)


def apply(kube: Kube, owner: dict[str, Any], plan: Plan, component: str, events: EventQueue | None = None) -> list[dict[str, Any]]:
    """Carry a plan out in the owner's namespace; creating what exists already is not an error (idempotence).

    Returns the objects created and replaced, and the owner after its status patch when one was sent, as the
    API server stored them (so a caller may cache them).
    A refused request raises a RefusedRequest that names it.
    """
    meta = owner["metadata"]
    namespace = meta["namespace"]
    stored: list[dict[str, Any]] = []
    for kind, name in plan.delete:
        with requesting("delete", kind, namespace, name):
            kube.delete(kind, namespace, name)
    for obj in plan.create:
        with requesting("create", obj["kind"], namespace, obj["metadata"]["name"]):
            try:
                stored.append(kube.create(obj))
            except Conflict:
                log.debug("%s %s/%s exists already", obj["kind"], namespace, obj["metadata"]["name"])
    for obj in plan.replace:
        with requesting("update", obj["kind"], namespace, obj["metadata"]["name"]):
            stored.append(kube.replace(obj))
    for kind, name, patch in plan.patch:
        with requesting("patch", kind, namespace, name):
            kube.patch(kind, namespace, name, patch)
    current = owner.get("status") or {}
    if any(current.get(key) != value for key, value in plan.status.items()):  # a no-op patch is a wasted request
        with requesting("patch", owner["kind"], namespace, meta["name"], "status"):
            stored.append(kube.patch_status(owner["kind"], namespace, meta["name"], plan.status))
    for event in plan.events:
        _post(kube, owner, event, component, events)
    return stored


def _post(kube: Kube, owner: dict[str, Any], event: Event, component: str, events: EventQueue | None) -> None:
    if events is not None:
        events.put(owner, event)
    else:
        kube.post_event(owner, event.type, event.reason, event.message, component)


def record_refusal(kube: Kube, owner: dict[str, Any], error: ApiError, component: str, events: EventQueue | None = None,
                   state: ReconcileState | None = None) -> Refusal | None:
    """Put a refusal the user must fix on the object: Degraded with the request, the server's words and the
    fix, and a Warning when the reason is new. `owner` is the object as the failed reconcile read it; if it
    changed since, the patch is refused (resourceVersion) and the next reconcile records it. A status the
    operator may not write is logged, never raised: the caller raises the original error. `state` (the
    operator's) remembers the reasons already warned about while the status could not record them, so they
    are not repeated on every resync."""
    refusal = classify(error, owner["kind"])
    if refusal is None:
        return None
    meta, status = owner["metadata"], owner.get("status") or {}
    update = degraded_status(status, refusal, meta.get("generation"), now_iso())
    news = is_news(status, refusal)
    if update is not None:
        try:
            precondition = {"metadata": {"resourceVersion": meta["resourceVersion"]}} if meta.get("resourceVersion") else {}
            kube.patch(owner["kind"], meta["namespace"], meta["name"], {**precondition, "status": update}, subresource="status")
        except Conflict:
            return refusal
        except ApiError as failed:
            log.warning("%s %s/%s: could not record %s on its status (%s); the refusal was: %s", owner["kind"],
                        meta["namespace"], meta["name"], refusal.reason, failed, refusal.message)
            if state is not None:
                warned = state.warned_unrecorded.setdefault(meta["uid"], set())
                news = refusal.reason not in warned
                warned.add(refusal.reason)
    if news:
        try:
            _post(kube, owner, Event("Warning", refusal.reason, refusal.message), component, events)
        except ApiError as failed:
            log.warning("Warning %s on %s %s/%s not posted: %s", refusal.reason, owner["kind"], meta["namespace"], meta["name"], failed)
    return refusal

