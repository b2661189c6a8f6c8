"""What the operator remembers between reconciles, held by the OperatorContext and handed to each reconcile.

Locks serialise the reconciles of one object (Job, Expert and resync events all reconcile it); caches spare
requests under a burst; the watch's versions let a reconcile trust the body it was handed. Nothing here is a
module global, so a test builds a fresh state and two operators in one process never share one.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator


class KeyedLocks:
    """One lock per key (an object's uid, a namespace), dropped once nobody holds or waits for it, so the
    table holds the objects being reconciled right now, not every object the operator ever saw."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}  # key → (lock, [holders and waiters])

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._locks[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


class WatchedVersions:
    """Which search bodies are the newest the watch delivered and hold every status this process wrote: a
    reconcile of such a body need not read the search again (under a burst, one request of five).

    The watch delivers one object's versions in order: a body is current when it is the latest version seen
    and the echo of this process's last status write has come by (or came before the write returned). Writes
    happen under the search's lock, so no write slips between the check and the reconcile that trusts it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, str] = {}  # uid → resourceVersion of the last watch event
        self._unechoed: dict[str, str | None] = {}  # uid → version of a write not seen on the watch yet (None: unknown)

    def seen(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Every watch event of a search, in the order the watch delivers them."""
        meta = body.get("metadata") or {}
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        if not uid or not version:
            return
        with self._lock:
            if event_type == "DELETED":
                self._latest.pop(uid, None)
                self._unechoed.pop(uid, None)
                return
            self._latest[uid] = version
            if self._unechoed.get(uid) == version:
                del self._unechoed[uid]

    def wrote(self, uid: str, version: str | None) -> None:
        """This process wrote the search; `version` as the API server returned it, None when unknown."""
        with self._lock:
            if version is not None and self._latest.get(uid) == version:
                self._unechoed.pop(uid, None)  # its echo came before the response
            else:
                self._unechoed[uid] = version

    def current(self, body: dict[str, Any]) -> bool:
        meta = body["metadata"]
        with self._lock:
            return meta["uid"] not in self._unechoed and self._latest.get(meta["uid"]) == meta.get("resourceVersion")


@dataclass
class ReconcileState:
    """`accounts_ready` (namespaces whose accounts exist) and `epoch_configmaps` (search uid → the epoch
    ConfigMap's name and body as stored) are what this process made and has not seen change since the last
    resync; `warned_unrecorded` holds the refusal reasons per object warned about while its status could not
    record them, so a status that cannot be written does not repeat its Warning on every resync."""

    locks: KeyedLocks = field(default_factory=KeyedLocks)
    watched: WatchedVersions = field(default_factory=WatchedVersions)
    accounts_ready: set[str] = field(default_factory=set)
    epoch_configmaps: dict[str, tuple[str, dict[str, Any] | None]] = field(default_factory=dict)
    warned_unrecorded: dict[str, set[str]] = field(default_factory=dict)

    def forget_cache(self) -> None:
        """Read everything again on the next reconcile (someone may have deleted or edited it)."""
        self.accounts_ready.clear()
        self.epoch_configmaps.clear()

    def settled(self, uid: str) -> None:
        """A reconcile of this object went through: a later refusal is news again."""
        self.warned_unrecorded.pop(uid, None)

    def forget(self, uid: str) -> None:
        """The object is gone: drop what is kept about it."""
        self.epoch_configmaps.pop(uid, None)
        self.warned_unrecorded.pop(uid, None)
