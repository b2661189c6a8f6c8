"""Pure renderers of a MergeSearch's own children: the epoch ConfigMap and the controller Job.

An *epoch* is one run of the search over a fixed expert set. Its ConfigMap freezes what the controller
replays against (the effective spec, the elite recipes it is seeded with, the counters of earlier epochs),
so a restarted controller sees exactly what the first one saw even if the MergeSearch changed since.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..catalogue.contracts import CONTROLLER_PERMANENT_EXITS
from ..evaluate.placement import asks_for_work
from ..spec.base import GROUP_VERSION
from ..spec.merge_search import MergeSearchSpec
from .naming import (
    CONTROLLER,
    EPOCH,
    child_name,
    epoch_configmap_name,
    labels,
    search_labels,
)
from .render_pods import (
    TMP_DIR, container_security_context, input_uris, model_cache_claim, model_volumes, owned_configmap, owned_job,
    pod_security_context, queue_name, resources, tmp_volume, worker_env,
)
from .settings import ClusterSettings

SPEC_KEY = "spec.json"
SEEDS_KEY = "seeds.json"
OFFSETS_KEY = "offsets.json"
DIGEST_KEY = "input-digest"
CONTROLLER_JOB_ENV = "EVOMERGE_CONTROLLER_JOB"
POD_IP_ENV = "EVOMERGE_POD_IP"  # the controller pod's own IP (downward API): where its evaluation pods reach it
# Fields that do not change what is searched: editing them reconfigures the running epoch.
OPERATIONAL_FIELDS = ("evaluation", "storage", "held_out", "allow_pickle", "suspend")


@dataclass(frozen=True)
class Epoch:
    """One run of a search: what the controller replays against."""

    number: int
    spec: MergeSearchSpec
    seeds: list[dict[str, Any]] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)

    @property
    def config_hash(self) -> str:
        """Digest of everything the controller is started with; a new hash means a new controller Job."""
        blob = json.dumps([self.spec.to_wire(), self.seeds, self.offsets], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


def input_digest(spec: MergeSearchSpec) -> str:
    """Digest of what is searched (experts, merge, search, objectives); a change starts a new epoch.

    Defaults are left out, so an operator upgrade that adds a field (with its default) keeps every
    running search in its epoch instead of restarting them all."""
    searched = spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True,
                               exclude=set(OPERATIONAL_FIELDS))
    return hashlib.sha256(json.dumps(searched, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def spec_document(name: str, spec: MergeSearchSpec) -> dict[str, Any]:
    """The effective spec as a whole MergeSearch document, the form `evomerge evaluate-batch --spec` reads."""
    return {"apiVersion": GROUP_VERSION, "kind": "MergeSearch", "metadata": {"name": name}, "spec": spec.to_wire()}


def controller_job_name(search_name: str, epoch: Epoch) -> str:
    return child_name(search_name, f"controller-e{epoch.number}-{epoch.config_hash[:6]}")


def render_epoch_configmap(search: dict[str, Any], epoch: Epoch) -> dict[str, Any]:
    meta = search["metadata"]
    return owned_configmap(epoch_configmap_name(meta["name"], epoch.number), meta["namespace"], search,
                           search_labels(EPOCH, meta["name"], meta["uid"], epoch.number), {
        SPEC_KEY: json.dumps(spec_document(meta["name"], epoch.spec), sort_keys=True),
        SEEDS_KEY: json.dumps(epoch.seeds, sort_keys=True),
        OFFSETS_KEY: json.dumps(epoch.offsets, sort_keys=True),
        DIGEST_KEY: input_digest(epoch.spec),
    })


def read_epoch_configmap(configmap: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, int]]:
    """(spec document, seed recipes, offsets) back from an epoch ConfigMap."""
    data = configmap.get("data") or {}
    return json.loads(data[SPEC_KEY]), json.loads(data.get(SEEDS_KEY, "[]")), json.loads(data.get(OFFSETS_KEY, "{}"))


def render_namespace_accounts(namespace: str, settings: ClusterSettings) -> list[dict[str, Any]]:
    """The ServiceAccounts a search's pods run as, in its namespace (shared by its searches, so unowned).

    The controller's account is bound to the chart's ClusterRole (read its search, write its status,
    manage Jobs and ConfigMaps); the evaluation account has no binding and mounts no token.
    """
    meta = {"namespace": namespace, "labels": labels(CONTROLLER)}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": settings.controller_service_account, **meta}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": settings.evaluation_service_account, **meta},
         "automountServiceAccountToken": False},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": settings.controller_service_account, **meta},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": settings.controller_cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": settings.controller_service_account, "namespace": namespace}],
        },
    ]


def render_controller_job(search: dict[str, Any], epoch: Epoch, settings: ClusterSettings) -> dict[str, Any]:
    """The Job running `evomerge controller` for one epoch: restartable, it resumes from the history."""
    meta = search["metadata"]
    name = controller_job_name(meta["name"], epoch)
    job_labels = search_labels(CONTROLLER, meta["name"], meta["uid"], epoch.number)
    cache = model_cache_claim(epoch.spec)
    output = [epoch.spec.storage.output.uri] if epoch.spec.storage.output else []  # the controller writes the report there
    seeds = [s.uri for s in epoch.spec.search.seeds if s.uri]  # the controller reads seed YAMLs; evaluation pods never do
    volumes, mounts = model_volumes(input_uris(epoch.spec) + seeds, cache, settings, writable=output)
    tmp, tmp_mount = tmp_volume()
    env = settings.to_env() + worker_env(settings, cache) + [
        {"name": CONTROLLER_JOB_ENV, "value": name},
    ]
    ports = []
    if asks_for_work(epoch.spec):  # its evaluation pods ask its work endpoint, at its own IP, for candidates
        env.append({"name": POD_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        ports = [{"name": "work", "containerPort": settings.work_port}]
    container = {
        "name": CONTROLLER,
        "image": settings.worker_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["evomerge", "controller", "--search", f"{meta['namespace']}/{meta['name']}", "--epoch", str(epoch.number)],
        "env": env,
        "resources": resources(settings.controller_resources),
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [tmp_mount, *mounts],
        "workingDir": TMP_DIR,
        **({"ports": ports} if ports else {}),
    }
    pod = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.controller_service_account,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(settings),
        "containers": [container],
        "volumes": [tmp, *volumes],
    }
    return owned_job(name, meta["namespace"], search, job_labels, pod, CONTROLLER, list(CONTROLLER_PERMANENT_EXITS),
                     queue=queue_name(epoch.spec, settings), backoffLimit=settings.controller_backoff_limit)
