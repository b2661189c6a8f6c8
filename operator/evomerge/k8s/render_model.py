"""Pure renderers of a MergedModel's children: the export Job (with its ConfigMap) and the serving pair.

Each version is exported to its own directory (`<storage.output.uri>/v<N>`), so a published checkpoint is
never overwritten while a server reads it; serving a new version changes the pod template and rolls the
Deployment.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..catalogue.engines import ENGINES
from ..merge.recipe import MergeRecipe
from ..spec.base import GROUP_VERSION
from ..spec.merge_search import MergeSearchSpec
from ..spec.merged_model import LineageEntry, MergedModelSpec
from .naming import (
    EXPORT,
    MODEL_LABEL,
    SERVING,
    TEMPLATE_HASH_ANNOTATION,
    export_job_name,
    labels,
    owner_reference,
    serving_name,
)
from .render_pods import (
    JOB_DIR, SHM_DIR, TMP_DIR, container_security_context, kept_output_path, model_cache_claim, model_volumes,
    owned_configmap, owned_job, placement, pod_path, pod_security_context, queue_name, resources, tmp_volume, worker_env,
)
from .render_search import spec_document
from .settings import ClusterSettings

SERVING_PORT = 8080  # the serving Deployment's container port, behind its Service
EXPORT_RECIPE = f"{JOB_DIR}/recipe.json"
EXPORT_SPEC = f"{JOB_DIR}/spec.json"
EXPORT_MODEL = f"{JOB_DIR}/model.json"


def versioned_uri(output_uri: str, version: int) -> str:
    return f"{output_uri.rstrip('/')}/v{version}"


def recipe_lineage(recipe: MergeRecipe, spec: MergeSearchSpec) -> list[LineageEntry]:
    """A merge's inputs (the base as "base", each expert, a data-flow path's other models) with the revisions the
    search spec gives them: what the export Job mounts, the MergedModel's lineage and its model card's."""
    revisions = {e.uri: e.revision for e in spec.experts}
    model_a = spec.merge.data_flow.model_a
    if model_a is not None:
        revisions[model_a.uri] = model_a.revision
    inputs = [("base", recipe.base_uri)] if recipe.base_uri else []
    inputs += [(e.name, e.uri) for e in recipe.experts]
    if recipe.layer_path is not None:
        inputs += [(n, u) for n, u in recipe.layer_path.sources.items() if n not in dict(inputs)]
    base_revision = spec.base_model.revision if spec.base_model else None
    return [LineageEntry(name=n, uri=u, revision=base_revision if n == "base" else revisions.get(u)) for n, u in inputs]


def _model_labels(component: str, model: str) -> dict[str, str]:
    return labels(component, **{MODEL_LABEL: model})


def render_export_configmap(model: dict[str, Any], search_spec: MergeSearchSpec) -> dict[str, Any]:
    meta, spec = model["metadata"], MergedModelSpec.model_validate(model["spec"])
    return owned_configmap(export_job_name(meta["name"], spec.version), meta["namespace"], model,
                           _model_labels(EXPORT, meta["name"]), {
        "recipe.json": json.dumps(spec.recipe, sort_keys=True),
        "spec.json": json.dumps(spec_document(spec.search, search_spec), sort_keys=True),
        "model.json": json.dumps({"apiVersion": GROUP_VERSION, "kind": "MergedModel", "metadata": {"name": meta["name"]},
                                  "spec": spec.to_wire()}, sort_keys=True),
    })


def render_export_job(model: dict[str, Any], search_spec: MergeSearchSpec, settings: ClusterSettings,
                      published_uri: str | None = None) -> dict[str, Any]:
    """`evomerge export-model`: write the merge (with the search's storage.output.exporter) and its model card to
    spec.outputUri, hash its inputs, score the held-out tasks — beside the version at `published_uri`, when the
    promotion gate compares them."""
    meta, spec = model["metadata"], MergedModelSpec.model_validate(model["spec"])
    name = export_job_name(meta["name"], spec.version)
    job_labels = _model_labels(EXPORT, meta["name"])
    cache = model_cache_claim(search_spec)
    inputs = [entry.uri for entry in recipe_lineage(MergeRecipe.from_dict(spec.recipe), search_spec)]
    volumes, mounts = model_volumes(inputs + ([published_uri] if published_uri else []), cache, settings,
                                    writable=[spec.output_uri])
    tmp, tmp_mount = tmp_volume()
    exporter = search_spec.storage.output.exporter if search_spec.storage.output is not None else "evomerge"
    container = {
        "name": "export",
        "image": search_spec.evaluation.image or settings.worker_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["evomerge", "export-model", "--recipe", EXPORT_RECIPE, "--spec", EXPORT_SPEC, "--model", EXPORT_MODEL,
                    "--out", kept_output_path(spec.output_uri, settings), "--exporter", exporter,
                    *(["--published", pod_path(published_uri, settings)] if published_uri else [])],
        "env": worker_env(settings, cache),
        "resources": resources(search_spec.evaluation.resources),
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "job", "mountPath": JOB_DIR, "readOnly": True}, tmp_mount, *mounts],
        "workingDir": TMP_DIR,
    }
    pod = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.evaluation_service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(settings),
        "containers": [container],
        "volumes": [{"name": "job", "configMap": {"name": name}}, tmp, *volumes],
        **placement(search_spec),
    }
    return owned_job(name, meta["namespace"], model, job_labels, pod, "export", [2], queue=queue_name(search_spec, settings),
                     backoffLimit=settings.evaluation_backoff_limit, activeDeadlineSeconds=search_spec.evaluation.timeout_seconds)


def render_serving_deployment(model: dict[str, Any], settings: ClusterSettings) -> dict[str, Any]:
    """A TGI or vLLM Deployment serving the exported version (status.outputUri), rolled when it changes."""
    meta, spec, status = model["metadata"], MergedModelSpec.model_validate(model["spec"]), model.get("status") or {}
    name = serving_name(meta["name"])
    selector = _model_labels(SERVING, meta["name"])
    uri = status["outputUri"]
    volumes, mounts = model_volumes([uri], None, settings)
    path = pod_path(uri, settings)
    launch = ENGINES[spec.serving.engine].launch
    assert launch is not None, "a served engine's catalogue entry says how its server starts"
    image = spec.serving.image or settings.server_image(spec.serving.engine)
    command = list(launch.command)
    args = launch.args([path], "0.0.0.0", SERVING_PORT, meta["name"], scoring=False)
    probe = {"httpGet": {"path": launch.health, "port": SERVING_PORT}, "periodSeconds": 5}
    template = {
        "metadata": {"labels": selector, "annotations": {"evomerge.dev/version": str(status.get("version"))}},
        "spec": {
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            "securityContext": pod_security_context(settings),
            "containers": [
                {
                    "name": "server",
                    "image": image,
                    "imagePullPolicy": settings.image_pull_policy,
                    "command": command,
                    "args": args,
                    "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "HOME", "value": TMP_DIR},
                            {"name": "HF_HOME", "value": f"{TMP_DIR}/hf"}],
                    "ports": [{"name": "http", "containerPort": SERVING_PORT}],
                    "startupProbe": {**probe, "failureThreshold": 360},
                    "readinessProbe": probe,
                    "resources": resources(spec.serving.resources),
                    "securityContext": container_security_context(read_only_root=False),
                    "volumeMounts": [{"name": "tmp", "mountPath": TMP_DIR}, {"name": "shm", "mountPath": SHM_DIR}, *mounts],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}},
                        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}}, *volumes],
        },
    }
    digest = hashlib.sha256(json.dumps([spec.serving.replicas, template], sort_keys=True).encode()).hexdigest()[:16]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": selector,
            "annotations": {TEMPLATE_HASH_ANNOTATION: digest},
            "ownerReferences": [owner_reference(model)],
        },
        "spec": {
            "replicas": spec.serving.replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": template,
        },
    }


def render_serving_service(model: dict[str, Any]) -> dict[str, Any]:
    meta = model["metadata"]
    selector = _model_labels(SERVING, meta["name"])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": serving_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": selector,
            "ownerReferences": [owner_reference(model)],
        },
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
