"""Pod building blocks shared by every renderer: security contexts, model volumes, paths inside pods.

Every container runs a plain `evomerge …` command whose file arguments start with one of the mount paths
below, so a test harness playing the node can run the same command locally by mapping those prefixes.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from ..evaluate.worker import TERMINATION_LOG, TERMINATION_LOG_ENV
from ..models.uris import PVC_MOUNT_ROOT_ENV, UriError, parse_uri
from ..spec.merge_search import KEPT_OUTPUT_FIX, KEPT_OUTPUT_PATTERN, MergeSearchSpec
from .naming import KUEUE_QUEUE_LABEL, owner_reference
from .settings import ClusterSettings

SPEC_DIR = "/etc/evomerge/spec"
JOB_DIR = "/etc/evomerge/job"
SPEC_FILE = f"{SPEC_DIR}/spec.json"
RECIPES_FILE = f"{JOB_DIR}/recipes.json"
RECIPE_FILE = f"{JOB_DIR}/recipe.json"
SCRATCH_DIR = "/model"
CANDIDATE_DIR = f"{SCRATCH_DIR}/candidate"
TMP_DIR = "/tmp"
SHM_DIR = "/dev/shm"
# The exit of a container stopped by SIGTERM (128 + 15): its pod was deleted — a node drain, an eviction, a user.
# Only the pod went; the work did not fail, so it costs no retry.
TERMINATED = 143


def pod_security_context(settings: ClusterSettings) -> dict[str, Any]:
    """PodSecurity "restricted": a fixed non-root user, and RuntimeDefault seccomp."""
    uid = settings.run_as_user
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(read_only_root: bool = True) -> dict[str, Any]:
    """Our images write only to mounted volumes; third-party servers get a writable root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
    }


def claim_of(uri: str) -> str | None:
    """The PersistentVolumeClaim a pvc:// URI lives on (pvc://claim/path), else None."""
    try:
        parsed = parse_uri(uri)
    except UriError:
        return None
    if parsed.scheme != "pvc":
        return None
    return parsed.location.strip("/").split("/")[0]


def input_uris(spec: MergeSearchSpec) -> list[str]:
    uris = [e.uri for e in spec.experts]
    if spec.base_model is not None:
        uris.insert(0, spec.base_model.uri)
    return uris


def model_cache_claim(spec: MergeSearchSpec) -> str | None:
    return spec.storage.model_cache.persistent_volume_claim if spec.storage.model_cache else None


def pod_path(uri: str, settings: ClusterSettings) -> str:
    """Where a pvc:// or file:// URI is found inside a pod rendered here (mounts from `model_volumes`).

    A relative plain path is refused: made absolute here it would name a folder of the operator's working
    directory, which no pod has."""
    if "://" not in uri and not uri.startswith("/"):
        raise UriError(f"{uri!r}: a relative path means nothing inside a pod — give file:///absolute/path or pvc://claim/path")
    parsed = parse_uri(uri)
    if parsed.scheme == "pvc":
        return f"{settings.pvc_root}/{parsed.location.strip('/')}"
    if parsed.scheme == "file":
        return parsed.location if parsed.location.startswith("/") else "/" + parsed.location
    raise UriError(f"{uri!r}: a pod reads and writes pvc:// or file:// locations only; {parsed.scheme}:// needs a prefetch")


def kept_output_path(uri: str, settings: ClusterSettings) -> str:
    """Where a pod writes an output that must outlive it (an export, the report): on a claim, nowhere else."""
    if not re.match(KEPT_OUTPUT_PATTERN, uri):
        raise UriError(f"{uri!r}: {KEPT_OUTPUT_FIX}")
    return pod_path(uri, settings)


def model_volumes(
    uris: Iterable[str], cache_claim: str | None, settings: ClusterSettings, writable: Iterable[str] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts that make every model URI readable at the path models.uris expects.

    pvc://claim/… mounts the claim at <pvcRoot>/claim (read-only unless a URI in `writable` lives on it);
    the model cache claim, when set, holds the Hugging Face cache that hf:// URIs resolve through.
    """
    writable_claims = {c for c in (claim_of(u) for u in writable) if c}
    claims = sorted({c for c in (claim_of(u) for u in uris) if c} | writable_claims)
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for index, claim in enumerate(claims):
        name = f"pvc-{index}"
        read_only = claim not in writable_claims
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}})
        mounts.append({"name": name, "mountPath": f"{settings.pvc_root}/{claim}", "readOnly": read_only})
    if cache_claim is not None:
        volumes.append({"name": "model-cache", "persistentVolumeClaim": {"claimName": cache_claim, "readOnly": True}})
        mounts.append({"name": "model-cache", "mountPath": settings.cache_mount, "readOnly": True})
    return volumes, mounts


def worker_env(settings: ClusterSettings, cache_claim: str | None) -> list[dict[str, str]]:
    """Environment of every evomerge container: offline hubs, where claims and the cache are mounted."""
    env = [
        {"name": PVC_MOUNT_ROOT_ENV, "value": settings.pvc_root},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "HF_DATASETS_OFFLINE", "value": "1"},
        {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
        {"name": "HOME", "value": TMP_DIR},
        # Where the pod commands report (evaluate/worker.report); named in the spec so anything playing the kubelet can map the path.
        {"name": TERMINATION_LOG_ENV, "value": TERMINATION_LOG},
    ]
    if cache_claim is not None:
        env.append({"name": "HF_HOME", "value": f"{settings.cache_mount}/huggingface"})
    return env


def tmp_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    return {"name": "tmp", "emptyDir": {}}, {"name": "tmp", "mountPath": TMP_DIR}


def resources(requirements: Any) -> dict[str, Any]:
    """A ResourceRequirements spec type (or a plain dict) as the container field; empty parts dropped."""
    data = requirements if isinstance(requirements, dict) else requirements.to_wire()
    return {k: dict(v) for k, v in data.items() if v}


def placement(spec: MergeSearchSpec) -> dict[str, Any]:
    """nodeSelector and tolerations of evaluation pods, from spec.evaluation."""
    out: dict[str, Any] = {}
    if spec.evaluation.node_selector:
        out["nodeSelector"] = dict(spec.evaluation.node_selector)
    if spec.evaluation.tolerations:
        out["tolerations"] = [t.to_wire() for t in spec.evaluation.tolerations]
    return out


def queue_name(spec: MergeSearchSpec, settings: ClusterSettings) -> str | None:
    """The Kueue LocalQueue of a search's Jobs: its own, else the chart's, else none."""
    return spec.evaluation.queue_name or settings.queue_name or None


def owned_configmap(name: str, namespace: str, owner: dict[str, Any], labels: dict[str, str],
                    data: dict[str, str]) -> dict[str, Any]:
    """A ConfigMap owned by `owner`, so it goes when its owner goes."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner_reference(owner)]},
        "data": data,
    }


def owned_job(name: str, namespace: str, owner: dict[str, Any], labels: dict[str, str], pod: dict[str, Any], container: str,
              permanent_exits: Iterable[int], annotations: dict[str, str] | None = None, queue: str | None = None,
              **job_spec: Any) -> dict[str, Any]:
    """A Job owned by `owner` (deleted with it) whose pod is replaced only once it has failed; an exit of
    `container` with a permanent code (bad input: a retry cannot help) fails the Job at once, and a node
    disruption or a deleted pod (SIGTERM) costs no retry. With a Kueue `queue` it is created suspended in that
    LocalQueue: Kueue unsuspends it on admission, and its activeDeadlineSeconds counts from then (status.startTime).
    An owning Job (an evaluation Job's controller Job) is an owner but not the controller: Kueue takes a Job whose
    controller is a queued Job for a part of that Job's workload, which it never admits on its own (it stays
    suspended), while garbage collection follows any ownerReference."""
    if queue:
        labels = {**labels, KUEUE_QUEUE_LABEL: queue}
        job_spec = {**job_spec, "suspend": True}
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels,
                                "ownerReferences": [owner_reference(owner, controller=owner["kind"] != "Job")]}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            **job_spec,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob", "onExitCodes": {"containerName": container, "operator": "In", "values": list(permanent_exits)}},
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                    {"action": "Ignore", "onExitCodes": {"containerName": container, "operator": "In", "values": [TERMINATED]}},
                ]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
