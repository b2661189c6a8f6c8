"""The runner's history store in ConfigMaps owned by the MergeSearch: a killed controller resumes by replay.

Each event is one key of a ConfigMap (zero-padded sequence number → compact JSON), so an append is one
small merge patch rather than a rewrite. A ConfigMap holds at most 1 MiB, so events fill numbered chunks of
CHUNK_BYTES each. Every patch carries the resourceVersion this writer last saw: a second controller writing
the same history is refused instead of interleaving events.

A chunk deleted under a running controller (a cleanup script, a careless `kubectl delete cm`) is written again
from the events this writer holds: chunks are cut by the same rule whatever writes them, so each missing chunk
comes back with the very keys it had. Chunks missing when a controller starts cannot be known: replay keeps the
unbroken run of events from the start, and `lost` says what was dropped.
"""

from __future__ import annotations

import json
from typing import Any

from .client import Conflict, Kube, NotFound
from .naming import CHUNK_LABEL, HISTORY, history_configmap_name, owner_reference, search_labels, selector

CHUNK_BYTES = 768 * 1024
FULL_ANNOTATION = "evomerge.dev/full"


class HistoryConflict(RuntimeError):
    """Another process wrote this history since this one read it: two controllers run the same search."""


class ConfigMapHistory:
    def __init__(self, kube: Kube, search: dict[str, Any], epoch: int, chunk_bytes: int = CHUNK_BYTES):
        meta = search["metadata"]
        self.kube = kube
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.owner = owner_reference(search)
        self.epoch = epoch
        self.chunk_bytes = chunk_bytes
        self._loaded = False
        self._count = 0
        self._chunk: str | None = None
        self._chunk_index = -1
        self._chunk_size = 0
        self._version = ""
        self._events: list[dict[str, Any]] = []  # what was replayed and appended, for the report
        self.lost: str | None = None  # what replay found missing, said for the user
        self._stale: dict[int, dict[str, Any]] = {}  # chunks after a gap: overwritten as the history reaches them

    def recorded(self) -> list[dict[str, Any]]:
        """Every event of this epoch so far (replayed and appended), without another request."""
        return list(self._events)

    def _labels(self) -> dict[str, str]:
        return search_labels(HISTORY, self.name, self.uid, self.epoch)

    def events(self) -> list[dict[str, Any]]:
        chunks = self.kube.list("ConfigMap", self.namespace, selector(self._labels()))
        chunks.sort(key=lambda c: int(c["metadata"]["labels"][CHUNK_LABEL]))
        events: list[dict[str, Any]] = []
        for position, chunk in enumerate(chunks):
            data = chunk.get("data") or {}
            keys = sorted(data)
            if int(chunk["metadata"]["labels"][CHUNK_LABEL]) != position or (keys and int(keys[0]) != len(events)):
                self.lost = (f"history chunk {position} of epoch {self.epoch} is missing: replay keeps the first "
                             f"{len(events)} events and the search evaluates again from there")
                self._stale = {int(c["metadata"]["labels"][CHUNK_LABEL]): c for c in chunks[position:]}
                chunks = chunks[:position]
                break
            events.extend(json.loads(data[key]) for key in keys)
        self._count = len(events)
        self._events = list(events)
        if chunks:
            last = chunks[-1]
            self._chunk = last["metadata"]["name"]
            self._chunk_index = int(last["metadata"]["labels"][CHUNK_LABEL])
            self._chunk_size = sum(len(k) + len(v) for k, v in (last.get("data") or {}).items())
            self._version = last["metadata"]["resourceVersion"]
        self._loaded = True
        return events

    def append(self, event: dict[str, Any]) -> None:
        if not self._loaded:
            self.events()
        line = json.dumps(event, separators=(",", ":"), allow_nan=False)
        key = f"{self._count:09d}"
        size = len(key) + len(line)
        if size > self.chunk_bytes:
            raise ValueError(
                f"a history event of {size} bytes does not fit in a ConfigMap chunk ({self.chunk_bytes} bytes) — "
                "lower search.populationSize"
            )
        if self._chunk is None or self._chunk_size + size > self.chunk_bytes:
            if self._chunk is not None:
                self._patch({"metadata": {"annotations": {FULL_ANNOTATION: "true"}}})  # a stale writer's next patch fails
            self._new_chunk(key, line)
        else:
            self._patch({"data": {key: line}})
            self._chunk_size += size
        self._count += 1
        self._events.append(event)

    def _patch(self, patch: dict[str, Any]) -> None:
        """A merge patch of the current chunk, valid only if nobody wrote it since this writer did; a chunk
        deleted meanwhile is written again first."""
        try:
            try:
                stored = self.kube.patch("ConfigMap", self.namespace, self._chunk, self._versioned(patch))  # type: ignore[arg-type]
            except NotFound:
                self._rewrite()
                stored = self.kube.patch("ConfigMap", self.namespace, self._chunk, self._versioned(patch))  # type: ignore[arg-type]
        except Conflict as error:
            raise HistoryConflict(
                f"ConfigMap {self.namespace}/{self._chunk} changed under this controller ({error}) — "
                "another controller runs this search; delete the extra controller Job"
            ) from None
        self._version = stored["metadata"]["resourceVersion"]

    def _versioned(self, patch: dict[str, Any]) -> dict[str, Any]:
        return {**patch, "metadata": {**patch.get("metadata", {}), "resourceVersion": self._version}}

    def _rewrite(self) -> None:
        """Create again every chunk that is gone, from the events held here, cut as `append` cut them."""
        chunks: list[dict[str, str]] = [{}]
        size = 0
        for count, event in enumerate(self._events):
            key, line = f"{count:09d}", json.dumps(event, separators=(",", ":"), allow_nan=False)
            if chunks[-1] and size + len(key) + len(line) > self.chunk_bytes:
                chunks.append({})
                size = 0
            chunks[-1][key] = line
            size += len(key) + len(line)
        for index, data in enumerate(chunks):
            try:
                stored = self.kube.create(self._chunk_body(index, data, full=index < len(chunks) - 1))
            except Conflict:
                continue  # this one survived
            if index == self._chunk_index:
                self._version = stored["metadata"]["resourceVersion"]

    def _chunk_body(self, index: int, data: dict[str, str], full: bool = False) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": history_configmap_name(self.name, self.epoch, index),
            "namespace": self.namespace,
            "labels": {**self._labels(), CHUNK_LABEL: str(index)},
            "ownerReferences": [self.owner],
        }
        if full:
            metadata["annotations"] = {FULL_ANNOTATION: "true"}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}

    def _new_chunk(self, key: str, line: str) -> None:
        index = self._chunk_index + 1
        name = history_configmap_name(self.name, self.epoch, index)
        stale = self._stale.pop(index, None)
        try:
            if stale is not None:  # after a gap: this chunk's old events follow lost ones, so they are replaced
                data: dict[str, str | None] = {k: None for k in stale.get("data") or {}}
                stored = self.kube.patch("ConfigMap", self.namespace, name, {
                    "metadata": {"resourceVersion": stale["metadata"]["resourceVersion"], "annotations": {FULL_ANNOTATION: None}},
                    "data": {**data, key: line}})
            else:
                stored = self.kube.create(self._chunk_body(index, {key: line}))
        except Conflict as error:
            raise HistoryConflict(
                f"history chunk {self.namespace}/{name} already exists ({error}) — another controller runs this search"
            ) from None
        self._chunk, self._chunk_index = name, index
        self._chunk_size = len(key) + len(line)
        self._version = stored["metadata"]["resourceVersion"]
