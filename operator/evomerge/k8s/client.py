"""The one place that talks to the Kubernetes API: plain JSON dicts in and out, every request counted.

Objects travel as the dicts kubectl shows (camelCase, no client model classes), so the pure renderers'
output is sent as is and tests compare plain data. Transport and authentication come from the official
`kubernetes` client (kubeconfig or in-cluster service account).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import quote

from kubernetes.client.exceptions import ApiException

from ..spec.base import API_GROUP, API_VERSION

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_TIMEOUT = 30.0
CONNECTIONS = 40  # above the operator's handler threads (32) plus its resync and event threads


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        root = "/api/v1" if not self.group else f"/apis/{self.group}/{self.version}"
        parts = [root]
        if namespace is not None:
            parts.append(f"namespaces/{quote(namespace)}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name))
        if subresource is not None:
            parts.append(subresource)
        return "/".join(parts)

    @property
    def api_version(self) -> str:
        return self.version if not self.group else f"{self.group}/{self.version}"


KINDS: dict[str, Kind] = {
    k.kind: k
    for k in [
        Kind("", "v1", "pods", "Pod"),
        Kind("", "v1", "configmaps", "ConfigMap"),
        Kind("", "v1", "services", "Service"),
        Kind("", "v1", "events", "Event"),
        Kind("batch", "v1", "jobs", "Job"),
        Kind("", "v1", "serviceaccounts", "ServiceAccount"),
        Kind("", "v1", "namespaces", "Namespace"),
        Kind("apps", "v1", "deployments", "Deployment"),
        Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
        Kind("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition"),
        Kind(API_GROUP, API_VERSION, "mergesearches", "MergeSearch"),
        Kind(API_GROUP, API_VERSION, "mergedmodels", "MergedModel"),
        Kind(API_GROUP, API_VERSION, "experts", "Expert"),
    ]
}


class ApiError(RuntimeError):
    """A refused request, with the API server's own message."""

    def __init__(self, status: int, reason: str, message: str):
        self.status, self.reason = status, reason
        super().__init__(f"{status} {reason}: {message}")


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: AlreadyExists on create, or a stale resourceVersion on update."""


class Invalid(ApiError):
    """422: the object breaks the schema or a validation rule."""


class Gone(ApiError):
    """410: a watch's resourceVersion is too old; list again."""


def _error(status: int, body: bytes | str | None) -> ApiError:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        data = {}
    reason = data.get("reason") or str(status)
    message = data.get("message") or (body.decode(errors="replace") if isinstance(body, bytes) else str(body))
    cls = {404: NotFound, 409: Conflict, 410: Gone, 422: Invalid}.get(status, ApiError)
    return cls(status, reason, message)


def watch_events(response: Any) -> Iterator[dict[str, Any]]:
    """The events of a watch response, one JSON object per line of its chunked body."""
    buffer = b""
    for chunk in response.stream(4096, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


class Kube:
    """A thread-safe API client; `requests` counts calls by verb (for benchmarks and metrics)."""

    def __init__(self, api_client: Any):
        self.api_client = api_client
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, kubeconfig: str | None = None, connections: int = CONNECTIONS) -> "Kube":
        """From a kubeconfig file, else the pod's service account, else the default kubeconfig.

        `connections` kept open: as many as threads that may call at once, or each extra call pays a new
        TLS handshake (the client's default is 5 per CPU).
        """
        from kubernetes import client, config

        configuration = client.Configuration()
        configuration.connection_pool_maxsize = connections
        if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ and "KUBECONFIG" not in os.environ:
            config.load_incluster_config(client_configuration=configuration)
            return cls(client.ApiClient(configuration))
        return cls(config.new_client_from_config(config_file=kubeconfig, client_configuration=configuration))

    def close(self) -> None:
        self.api_client.close()

    def request_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.requests)

    # ---- transport ------------------------------------------------------------------------------------
    def _send(self, method: str, path: str, query: list[tuple[str, str]] | None = None, body: Any = None,
              content_type: str = JSON, timeout: float | None = DEFAULT_TIMEOUT, stream: bool = False) -> Any:
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api_client.param_serialize(
            method=method, resource_path=path, query_params=list(query or []), header_params=headers,
            body=body, auth_settings=["BearerToken"],
        )
        with self._lock:
            self.requests[("WATCH" if stream else method)] += 1
        try:
            response = self.api_client.call_api(*request, _request_timeout=timeout)
        except ApiException as exc:
            raise _error(exc.status or 0, exc.body) from None
        if stream:
            if not 200 <= response.status <= 299:
                raise _error(response.status, response.read())
            return response.response
        data = response.read()
        if not 200 <= response.status <= 299:
            raise _error(response.status, data)
        return json.loads(data) if data else {}

    # ---- objects --------------------------------------------------------------------------------------
    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self._send("GET", KINDS[kind].path(namespace, name))
        except NotFound:
            return None

    def list(self, kind: str, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.list_with_version(kind, namespace, label_selector)[0]

    def list_with_version(self, kind: str, namespace: str | None, label_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        query = [("labelSelector", label_selector)] if label_selector else []
        data = self._send("GET", KINDS[kind].path(namespace), query)
        items = data.get("items", [])
        info = KINDS[kind]
        for item in items:  # list items omit apiVersion/kind; ownerReferences and renderers need them
            item.setdefault("apiVersion", info.api_version)
            item.setdefault("kind", info.kind)
        return items, data.get("metadata", {}).get("resourceVersion", "")

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        namespace = obj["metadata"].get("namespace")
        return self._send("POST", KINDS[obj["kind"]].path(namespace), body=obj)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return self._send("PUT", KINDS[obj["kind"]].path(meta.get("namespace"), meta["name"]), body=obj)

    def patch(self, kind: str, namespace: str | None, name: str, patch: dict[str, Any], subresource: str | None = None) -> dict[str, Any]:
        """A JSON merge patch (None deletes a key; lists are replaced whole)."""
        return self._send("PATCH", KINDS[kind].path(namespace, name, subresource), body=patch, content_type=MERGE_PATCH)

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return self.patch(kind, namespace, name, {"status": status}, subresource="status")

    def delete(self, kind: str, namespace: str | None, name: str, propagation: str = "Background") -> bool:
        """Delete and let the garbage collector take the children; False when it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            self._send("DELETE", KINDS[kind].path(namespace, name), body=body)
        except NotFound:
            return False
        return True

    def watch(self, kind: str, namespace: str | None, label_selector: str | None, resource_version: str,
              timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events after `resource_version` for up to `timeout_seconds`; BOOKMARK events carry the latest version."""
        query = [("watch", "true"), ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", str(timeout_seconds))]
        if label_selector:
            query.append(("labelSelector", label_selector))
        response = self._send("GET", KINDS[kind].path(namespace), query, timeout=timeout_seconds + 10, stream=True)
        finished = False
        try:
            for event in watch_events(response):
                if event["type"] == "ERROR":
                    status = event["object"]
                    raise _error(int(status.get("code", 500)), json.dumps(status))
                yield event["type"], event["object"]
            finished = True
        finally:
            if finished:
                response.release_conn()
            else:  # the caller stopped early: unread events would poison a pooled connection
                response.close()

    # ---- events ---------------------------------------------------------------------------------------
    def post_event(self, regarding: dict[str, Any], type_: str, reason: str, message: str, component: str) -> None:
        """A core/v1 Event on an object (what `kubectl describe` and dashboards show)."""
        from .conditions import now_iso

        meta = regarding["metadata"]
        stamp = now_iso()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": regarding["apiVersion"], "kind": regarding["kind"], "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": os.environ.get("HOSTNAME", component),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        self.create(event)
