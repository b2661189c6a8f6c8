"""Names and labels of every child object: deterministic, within Kubernetes' limits, and never Argo CD's.

Children carry their own label set (no copy of the parent's labels, no `app.kubernetes.io/instance`), so
GitOps tools that track resources by label never mistake an operator-made Job for a Git-managed one.
"""

from __future__ import annotations

import hashlib

from ..spec.base import API_GROUP

MAX_NAME = 63  # DNS label: Job names end up in the pods' job-name label, which is limited to 63

SEARCH_LABEL = f"{API_GROUP}/search"
SEARCH_UID_LABEL = f"{API_GROUP}/search-uid"
MODEL_LABEL = f"{API_GROUP}/merged-model"
COMPONENT_LABEL = f"{API_GROUP}/component"
EPOCH_LABEL = f"{API_GROUP}/epoch"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"  # Kueue's: the LocalQueue a Job waits in
CHUNK_LABEL = f"{API_GROUP}/chunk"
CANDIDATES_ANNOTATION = f"{API_GROUP}/candidates"
TEMPLATE_HASH_ANNOTATION = f"{API_GROUP}/template-hash"
MANAGED_BY = "evomerge-operator"
CONTROLLER_SOURCE = "evomerge-controller"  # the source of the events the controller posts

CONTROLLER = "controller"
EVALUATION = "evaluation"
HISTORY = "history"
EPOCH = "epoch"
EXPORT = "export"
SERVING = "serving"
COMPARISON = "comparison"


def child_name(parent: str, suffix: str) -> str:
    """`<parent>-<suffix>`, shortened with a hash of the parent when it would pass 63 characters."""
    name = f"{parent}-{suffix}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(parent.encode()).hexdigest()[:6]
    room = MAX_NAME - len(suffix) - len(digest) - 2
    return f"{parent[:room].rstrip('-')}-{digest}-{suffix}"


def epoch_configmap_name(search: str, epoch: int) -> str:
    return child_name(search, f"e{epoch}")


def history_configmap_name(search: str, epoch: int, chunk: int) -> str:
    return child_name(search, f"e{epoch}-history-{chunk}")


def evaluation_job_name(search: str, epoch: int, first_candidate: str, count: int) -> str:
    return child_name(search, f"e{epoch}-{first_candidate}-{count}")


def worker_job_name(search: str, epoch: int, first_candidate: str, incarnation: int) -> str:
    """An evaluation Job that asks for work (evaluation_workers.py); `incarnation` keeps a restarted controller's
    names apart from its predecessor's Jobs, which it cannot delete and which end by themselves."""
    return child_name(search, f"e{epoch}-{first_candidate}-w{incarnation}")


def export_job_name(model: str, version: int) -> str:
    return child_name(model, f"export-v{version}")


def serving_name(model: str) -> str:
    return child_name(model, "serve")


def labels(component: str, **extra: str) -> dict[str, str]:
    """The label set of a child: ours only (see the module docstring)."""
    out = {
        "app.kubernetes.io/name": "evomerge",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        COMPONENT_LABEL: component,
    }
    out.update(extra)
    return out


def search_labels(component: str, search: str, uid: str, epoch: int | None = None) -> dict[str, str]:
    extra = {SEARCH_LABEL: search, SEARCH_UID_LABEL: uid}
    if epoch is not None:
        extra[EPOCH_LABEL] = str(epoch)
    return labels(component, **extra)


def selector(values: dict[str, str]) -> str:
    """A label selector string matching every given label."""
    return ",".join(f"{k}={v}" for k, v in sorted(values.items()))


def owner_reference(owner: dict, controller: bool = True) -> dict:
    """An ownerReference to a full object body, so garbage collection deletes the child with its owner."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }
