"""Requests the API server refuses for good, told to the user: which request, what the server said, the fix.

RBAC without a verb, an exceeded ResourceQuota or an admission policy refuses every retry the same way;
logged only, the resync would retry forever and the object would show nothing. Such a refusal becomes a
Degraded condition on the object (and one Warning per reason), which the next reconcile that goes through
clears. Conflicts, throttling, server errors and timeouts pass by themselves: they stay silent retries.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from .client import ApiError
from .conditions import DEGRADED, condition, find, merge_conditions

FORBIDDEN = "Forbidden"  # RBAC: the operator's ServiceAccount lacks a verb
QUOTA_EXCEEDED = "QuotaExceeded"
REJECTED = "Rejected"  # invalid, or denied by an admission webhook, policy or LimitRange
API_ERROR = "ApiError"  # anything else that a retry will not fix
REASONS = frozenset({FORBIDDEN, QUOTA_EXCEEDED, REJECTED, API_ERROR})
SERVER_MESSAGE_LIMIT = 500  # of a condition's 1024 characters; the request and the fix need the rest
CHART_RBAC = "charts/evomerge/templates/rbac.yaml"

_RBAC = re.compile(r'cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)" in API group "(?P<group>[^"]*)"')
_ESCALATION = "attempting to grant RBAC permissions not currently held"
_QUOTA = re.compile(r"exceeded quota: (?P<name>[^,]+)")
# 403s that go away by themselves: a namespace being deleted, a quota its controller has not counted yet.
_PASSING_403 = ("because it is being terminated", "status unknown for quota")
_QUOTA_HINTS = {
    "MergeSearch": "lower spec.evaluation.parallelism or spec.evaluation.resources",
    "MergedModel": "lower spec.serving.replicas or spec.serving.resources",
}


@dataclass(frozen=True)
class Request:
    """One request of a reconcile, as a user would say it: `create Job ns/jp-controller-e1-c8faab`."""

    verb: str
    kind: str
    namespace: str | None
    name: str
    subresource: str | None = None

    def __str__(self) -> str:
        target = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.verb} {self.kind} {target}" + (f" ({self.subresource})" if self.subresource else "")


class RefusedRequest(ApiError):
    """An ApiError that names the request it refused; status and reason are the server's."""

    def __init__(self, request: Request, error: ApiError):
        self.request = request
        self.server_message = server_message(error)
        super().__init__(error.status, error.reason, f"{request}: {self.server_message}")


@dataclass(frozen=True)
class Refusal:
    """What goes on the object: a Degraded reason and a message with the request, the server's words, the fix."""

    reason: str
    message: str


def server_message(error: ApiError) -> str:
    """The API server's own message, without the `403 Forbidden: ` that ApiError puts before it."""
    if isinstance(error, RefusedRequest):
        return error.server_message
    text, prefix = str(error), f"{error.status} {error.reason}: "
    return text[len(prefix):] if text.startswith(prefix) else text


@contextmanager
def requesting(verb: str, kind: str, namespace: str | None, name: str, subresource: str | None = None) -> Iterator[None]:
    """Name the request in any ApiError raised inside, so a refusal can say what was refused."""
    try:
        yield
    except RefusedRequest:
        raise
    except ApiError as error:
        raise RefusedRequest(Request(verb, kind, namespace, name, subresource), error) from error


def is_transient(error: ApiError) -> bool:
    """Gone, conflicting, throttled, failing or unreachable: the next resync tries again and likely succeeds.
    A create refused as NotFound is not: something the new object refers to is missing (the ClusterRole of a
    RoleBinding, say); other NotFounds mean the object or its namespace went away meanwhile."""
    creating = isinstance(error, RefusedRequest) and error.request.verb == "create"
    if error.status == 404:
        return not creating
    if error.status in (0, 409, 410, 429) or error.status >= 500:
        return True
    return error.status == 403 and any(part in server_message(error) for part in _PASSING_403)


def classify(error: ApiError, owner_kind: str) -> Refusal | None:
    """The Degraded reason and message for a refusal the user must fix; None for a transient one."""
    if is_transient(error):
        return None
    said = " ".join(server_message(error).split())[:SERVER_MESSAGE_LIMIT]
    request = error.request if isinstance(error, RefusedRequest) else None
    rbac = _RBAC.search(said)
    what = f"to {request}" if request is not None else f"to {rbac['verb']} {rbac['resource']}" if rbac else "a request"
    refused = f"the API server refused {what}: {said}"
    if error.status == 403 and rbac:
        group = rbac["group"] or '"" (core)'
        return Refusal(FORBIDDEN, f"{refused} — the operator's ServiceAccount lacks verb {rbac['verb']} on resource "
                                  f"{rbac['resource']} in apiGroup {group}: add it to the operator's ClusterRole (or Role, "
                                  f"with watchNamespaces) from {CHART_RBAC}")
    if error.status == 403 and _ESCALATION in said:
        return Refusal(FORBIDDEN, f"{refused} — the operator may only bind the controller ClusterRole it holds `bind` on: "
                                  f"check that the chart's ClusterRole ({CHART_RBAC}) names the role the operator binds")
    quota = _QUOTA.search(said)
    if error.status == 403 and quota:
        namespace = request.namespace if request is not None else None
        where = f" in namespace {namespace}" if namespace else ""
        ask = _QUOTA_HINTS.get(owner_kind, "ask for fewer or smaller objects")
        return Refusal(QUOTA_EXCEEDED, f"{refused} — raise ResourceQuota {quota['name'].strip()}{where}, or {ask}")
    if error.status == 404:
        return Refusal(REJECTED, f"{refused} — something the new object refers to does not exist: create it, or fix the "
                                 f"name (for the controller's RoleBinding: the chart's controller ClusterRole, which the "
                                 f"operator's EVOMERGE_CONTROLLER_CLUSTER_ROLE names)")
    if error.status in (400, 403, 422):
        return Refusal(REJECTED, f"{refused} — change what the message names: the spec, or for what the operator renders "
                                 f"the chart's values (images, resources, security settings); or have the policy allow it")
    return Refusal(API_ERROR, f"{refused} — a retry does not help: check the API server and the operator's log")


# Where a rendered pod's fields come from in a MergeSearch spec, so that a refused Job names the field to fix.
_POD_FIELD_SOURCES = (("resources", "spec.evaluation.resources"), ("nodeSelector", "spec.evaluation.nodeSelector"),
                      ("tolerations", "spec.evaluation.tolerations"), ("image", "spec.evaluation.image or serverImage"))


def refused_job(what: str, error: ApiError) -> str:
    """One line for a Job the API server refused at creation: the request, the server's words (the field
    and the cause) and which spec field to change."""
    said = " ".join(server_message(error).split())[:SERVER_MESSAGE_LIMIT]
    cause = said.split(" is invalid: ", 1)[-1].strip("[]")
    source = next((spec for field, spec in _POD_FIELD_SOURCES if f".{field}" in cause), None)
    fix = f"fix {source}" if source else "fix what the message names in the spec, or the chart's values"
    return f"the API server refused {what}: {cause} — {fix}"


def degraded_status(status: dict[str, Any], refusal: Refusal, generation: int | None, now: str) -> dict[str, Any] | None:
    """The status patch that records a refusal (Degraded only: the other conditions and the top-level
    observedGeneration still say what the last reconcile that went through saw); None when it is there already."""
    current = status.get("conditions") or []
    wanted = condition(DEGRADED, True, refusal.reason, refusal.message, generation)
    previous = find(current, DEGRADED) or {}
    if all(previous.get(key) == value for key, value in wanted.items()):
        return None
    return {"conditions": merge_conditions(current, [wanted], now)}


def is_news(status: dict[str, Any], refusal: Refusal) -> bool:
    """A Warning is due when the object does not show this reason yet: one per reason, not one per resync."""
    previous = find(status.get("conditions"), DEGRADED) or {}
    return previous.get("status") != "True" or previous.get("reason") != refusal.reason


def clear_refusal(plan_status: dict[str, Any], status: dict[str, Any], generation: int | None, now: str) -> None:
    """A reconcile that went through clears a refusal's Degraded, also when its plan sets no conditions."""
    previous = find(status.get("conditions"), DEGRADED) or {}
    if "conditions" in plan_status or previous.get("status") != "True" or previous.get("reason") not in REASONS:
        return
    plan_status["conditions"] = merge_conditions(status.get("conditions") or [],
                                                 [condition(DEGRADED, False, "AsExpected", "", generation)], now)
