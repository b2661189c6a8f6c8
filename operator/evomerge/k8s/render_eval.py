"""Pure renderers of evaluation Jobs and the ConfigMap carrying their recipes.

Engine `transformers`: one container merges and scores the whole batch in-process. Served engines: init
container `merge` writes the batch's first candidate into an emptyDir, a native sidecar serves it
(startupProbe on its health route), and the `score` container scores through it. An engine whose server
swaps weights in place (catalogue/engines.py: vLLM) serves the whole batch from that one start: the scorer
holds the experts resident, writes each later candidate next to the first on the memory-backed emptyDir
and has the server reload it (evaluate/engines/served.py); that server listens on the pod's loopback only, since
its reload routes must not be reachable from other pods. Engines that cannot reload (TGI) serve one
candidate per pod, as do LoRA-adapter and data-flow searches. Either way the scores leave the pod as the
scorer's termination message, so evaluation pods carry no API token.

When every candidate is one LoRA adapter over the base (`adapter_servable`: LoRA experts, linear with
normalize or task_arithmetic), `merge` writes that combined adapter instead of a checkpoint, the server
loads the base and hosts the adapter under ADAPTER_NAME, and the scorer selects it by that name.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from ..catalogue.contracts import SCORER_PERMANENT_EXITS
from ..catalogue.engines import ENGINES
from ..evaluate.placement import candidates_per_pod, serves_adapter, swaps_in_pod
from ..evaluate.work_client import POD_NAME_ENV
from ..merge.recipe import MergeRecipe
from ..models.uris import parse_uri
from ..spec.merge_search import MergeSearchSpec
from .naming import CANDIDATES_ANNOTATION, EVALUATION, epoch_configmap_name, search_labels
from .render_pods import (
    CANDIDATE_DIR, JOB_DIR, RECIPES_FILE, RECIPE_FILE, SCRATCH_DIR, SHM_DIR, SPEC_DIR, SPEC_FILE, TMP_DIR,
    container_security_context, input_uris, model_cache_claim, model_volumes, owned_configmap, owned_job, placement,
    pod_path, pod_security_context, queue_name, resources, tmp_volume, worker_env,
)
from .render_search import SPEC_KEY
from .settings import ClusterSettings

ADAPTER_NAME = "candidate"  # the combined adapter's name on the server (vLLM model name, TGI adapter_id)
BASE_SERVED_NAME = "base"  # vLLM's name for the base itself, so the adapter's name stays unambiguous
ADAPTER_CONFIG_ENV = "EVOMERGE_ADAPTER_CONFIG"


def rank_wrapper(engine: str) -> str:
    """The shell that starts a server which must know the adapter's rank at start (AdapterHosting.rank_flag).

    Only the merge step knows the combined adapter's rank (Σ of the experts' ranks), so the server's shell
    reads "r" from the adapter it wrote, rounds it up to a value the server accepts and execs the server's
    command and arguments ("$@") with it; a rank above them all stops the pod naming the ways out.
    """
    hosting = ENGINES[engine].adapters
    assert hosting is not None and hosting.rank_flag is not None and hosting.ranks
    unlimited = [name for name, entry in ENGINES.items() if entry.adapters is not None and not entry.adapters.ranks]
    alternatives = f", or engine {' or '.join(unlimited)}" if unlimited else ""
    pick = (
        "import json, sys; r = json.load(open(sys.argv[1]))['r']; "
        f"ok = [v for v in {hosting.ranks} if v >= r]; "
        f"sys.exit(f'combined adapter rank {{r}} exceeds the largest {hosting.rank_flag} of engine {engine} "
        f"({hosting.ranks[-1]}) — use fewer or lower-rank LoRA experts{alternatives}') if not ok else print(ok[0])"
    )
    return f'rank="$(python3 -c "{pick}" "${ADAPTER_CONFIG_ENV}")" && exec "$@" {hosting.rank_flag} "$rank"'


def host_resources(requirements: Any) -> dict[str, Any]:
    """`requirements` without extended resources (nvidia.com/gpu and the like): what a container that holds
    data for an accelerator, but does not use one, asks for."""
    return {kind: {k: v for k, v in values.items() if "/" not in k} for kind, values in resources(requirements).items()
            if any("/" not in k for k in values)}


def render_recipes_configmap(job: dict[str, Any], candidates: Sequence[tuple[str, MergeRecipe]]) -> dict[str, Any]:
    """The batch's recipes, owned by its Job so they go when the Job goes; recipe.json is the first, which a
    served pod's `merge` step writes for its server to start on."""
    meta = job["metadata"]
    items = [{"id": cid, "recipe": recipe.to_dict()} for cid, recipe in candidates]
    data = {"recipes.json": json.dumps(items, sort_keys=True), "recipe.json": json.dumps(items[0]["recipe"], sort_keys=True)}
    return owned_configmap(meta["name"], meta["namespace"], job, dict(meta["labels"]), data)


def render_eval_job(
    search: dict[str, Any],
    epoch: int,
    name: str,
    candidate_ids: Sequence[str],
    spec: MergeSearchSpec,
    settings: ClusterSettings,
    owner: dict[str, Any],
    component: str = EVALUATION,
    held_out: bool = False,
    work_url: str | None = None,
) -> dict[str, Any]:
    """One evaluation Job for `candidate_ids` (up to candidates_per_pod of them).

    The search's own Jobs are component `evaluation`; the report's reference scores (search_compare.py) are
    component `comparison`, on spec.objectives or, with `held_out`, on spec.heldOut. With `work_url` (the
    controller's work endpoint, async searches that swap in place) the pod starts on its one candidate and
    then asks there for the next, for the epoch's whole life (evaluation_workers.py): no deadline of its own.
    """
    meta = search["metadata"]
    engine = spec.evaluation.engine
    if len(candidate_ids) > candidates_per_pod(spec):
        raise ValueError(f"engine {engine} takes at most {candidates_per_pod(spec)} candidates per pod here; "
                         f"got {len(candidate_ids)}")
    labels = search_labels(component, meta["name"], meta["uid"], epoch)
    volumes, mounts, model_mounts = _volumes(meta["name"], name, epoch, spec, settings)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.evaluation_service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(settings),
        "volumes": volumes,
        **placement(spec),
    }
    if not ENGINES[engine].served:
        pod["containers"] = [_scorer(spec, settings, mounts, resources(spec.evaluation.resources), False, held_out)]
    else:
        scratch = {"name": "scratch", "mountPath": SCRATCH_DIR}
        pod["initContainers"] = [_merge(spec, settings, [*mounts, scratch]), _server(spec, settings, model_mounts)]
        # The scorer writes the later candidates of a swapping pod next to the first.
        scorer_mounts = [*mounts, scratch if swaps_in_pod(spec) else {**scratch, "readOnly": True}]
        # A swapping pod's scorer holds the experts: the evaluation's host resources, without its accelerators.
        limits = host_resources(spec.evaluation.resources) if swaps_in_pod(spec) else resources(settings.scorer_resources)
        pod["containers"] = [_scorer(spec, settings, scorer_mounts, limits, True, held_out, work_url)]
    deadline = {} if work_url else {"activeDeadlineSeconds": spec.evaluation.timeout_seconds}
    return owned_job(name, meta["namespace"], owner, labels, pod, "score", list(SCORER_PERMANENT_EXITS),
                     annotations={CANDIDATES_ANNOTATION: ",".join(candidate_ids)},
                     queue=queue_name(spec, settings), backoffLimit=settings.evaluation_backoff_limit,
                     ttlSecondsAfterFinished=settings.evaluation_ttl_seconds, **deadline)


def _volumes(search: str, job: str, epoch: int, spec: MergeSearchSpec,
             settings: ClusterSettings) -> tuple[list[dict], list[dict], list[dict]]:
    """(volumes, the scorer's and merger's mounts, the model inputs' mounts alone: what a server reads)."""
    model_vols, model_mounts = model_volumes(input_uris(spec), model_cache_claim(spec), settings)
    tmp, tmp_mount = tmp_volume()
    volumes = [
        {"name": "spec", "configMap": {"name": epoch_configmap_name(search, epoch), "items": [{"key": SPEC_KEY, "path": "spec.json"}]}},
        {"name": "job", "configMap": {"name": job}},
        tmp,
        *model_vols,
    ]
    mounts = [
        {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
        {"name": "job", "mountPath": JOB_DIR, "readOnly": True},
        tmp_mount,
        *model_mounts,
    ]
    if ENGINES[spec.evaluation.engine].served:
        # A swapping pod's candidates go from the scorer to the server through memory, not a disk.
        medium = {"medium": "Memory"} if swaps_in_pod(spec) else {}
        volumes.append({"name": "scratch", "emptyDir": {**medium, "sizeLimit": settings.scratch_size}})
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}})
    return volumes, mounts, model_mounts


def _scorer(spec: MergeSearchSpec, settings: ClusterSettings, mounts: list[dict], limits: dict, served: bool,
            held_out: bool, work_url: str | None = None) -> dict[str, Any]:
    command = ["evomerge", "evaluate-batch", "--spec", SPEC_FILE, "--recipes", RECIPES_FILE]
    if held_out:
        command.append("--held-out")
    if served:
        command += ["--model-dir", CANDIDATE_DIR, "--server-url", f"http://127.0.0.1:{settings.server_port}"]
        if serves_adapter(spec):
            command += ["--adapter", ADAPTER_NAME]
    env: list[dict[str, Any]] = []
    if work_url:
        command += ["--work-url", work_url]
        env.append({"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    return _worker_step("score", command, spec, settings, mounts, limits, env)


def _worker_step(name: str, command: list[str], spec: MergeSearchSpec, settings: ClusterSettings, mounts: list[dict],
                 limits: dict[str, Any], env: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A container of the worker image (the `merge` step or the scorer), on a read-only root; `env` is added to
    the worker's own."""
    return {
        "name": name,
        "image": spec.evaluation.image or settings.worker_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": command,
        "env": worker_env(settings, model_cache_claim(spec)) + list(env),
        "resources": limits,
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
        "workingDir": TMP_DIR,
    }


def _merge(spec: MergeSearchSpec, settings: ClusterSettings, mounts: list[dict]) -> dict[str, Any]:
    command = ["evomerge", "merge", RECIPE_FILE, "--out", CANDIDATE_DIR]
    if spec.allow_pickle:
        command.append("--allow-pickle")
    if serves_adapter(spec):
        command.append("--adapter")
    # Devices of a finished init container are handed on to the server: one GPU serves both steps.
    return _worker_step("merge", command, spec, settings, mounts, resources(spec.evaluation.resources))


def _served_base(spec: MergeSearchSpec, settings: ClusterSettings) -> tuple[list[str], str]:
    """(model id and revision args, HF_HOME) of the base as the server loads it next to the adapter.

    pvc:// and file:// bases are directories in the pod; an hf:// base is loaded by repo id from the
    model-cache PVC's Hugging Face cache (offline), where the prefetch Job put it.
    """
    assert spec.base_model is not None, "serves_adapter guarantees a base model"
    uri = spec.base_model.uri
    parsed = parse_uri(uri)
    if parsed.scheme != "hf":
        return [pod_path(uri, settings)], f"{TMP_DIR}/hf"
    repo, _, pinned = parsed.location.strip("/").partition("@")
    revision = spec.base_model.revision or pinned
    cache = model_cache_claim(spec)
    return [repo, *(["--revision", revision] if revision else [])], (
        f"{settings.cache_mount}/huggingface" if cache is not None else f"{TMP_DIR}/hf")


def _server(spec: MergeSearchSpec, settings: ClusterSettings, model_mounts: list[dict]) -> dict[str, Any]:
    """The native sidecar (restartPolicy Always): started before `score`, stopped after it; the kubelet restarts
    it if it dies, and the scorer hands a restarted server its candidate again (evaluate/engines/served.py).

    It serves the merged checkpoint the `merge` step wrote, or (serves_adapter) the base with that step's
    combined adapter hosted as ADAPTER_NAME. A swapping server listens on the pod's loopback only and is
    probed from inside the pod, as its weight-reload routes take any folder the pod can read.
    """
    engine = spec.evaluation.engine
    launch = ENGINES[engine].launch
    assert launch is not None, "a served engine's catalogue entry says how its server starts"
    port = settings.server_port
    adapter, swapping = serves_adapter(spec), swaps_in_pod(spec)
    model, hf_home = _served_base(spec, settings) if adapter else ([CANDIDATE_DIR], f"{TMP_DIR}/hf")
    host = "127.0.0.1" if swapping else "0.0.0.0"
    command = list(launch.command)
    args = launch.args(model, host, port, BASE_SERVED_NAME if adapter else ADAPTER_NAME) + list(spec.evaluation.server_args)
    env = [{"name": "HF_HOME", "value": hf_home}, *({"name": k, "value": v} for k, v in launch.env)]
    if swapping:
        env += [{"name": k, "value": v} for k, v in launch.swap_env]
    hosting = ENGINES[engine].adapters
    if adapter:
        assert hosting is not None, "serves_adapter guarantees an engine that hosts adapters"
        args += hosting.rendered_args(ADAPTER_NAME, CANDIDATE_DIR)
        env += [{"name": k, "value": v} for k, v in hosting.rendered_env(ADAPTER_NAME, CANDIDATE_DIR)]
        if hosting.rank_flag:
            command = ["/bin/sh", "-c", rank_wrapper(engine), engine, *command]
            env.append({"name": ADAPTER_CONFIG_ENV, "value": f"{CANDIDATE_DIR}/adapter_config.json"})
    env += [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "HOME", "value": TMP_DIR}]
    period = 5
    health = f"http://127.0.0.1:{port}{launch.health}"
    probe: dict[str, Any] = ({"exec": {"command": ["python3", "-c", f"import urllib.request; urllib.request.urlopen({health!r}, timeout=4)"]}}
                             if swapping else {"httpGet": {"path": launch.health, "port": port}})
    return {
        "name": "server",
        "image": spec.evaluation.server_image or settings.server_image(engine),
        "imagePullPolicy": settings.image_pull_policy,
        "restartPolicy": "Always",
        "command": command,
        "args": args,
        "env": env,
        "ports": [{"name": "http", "containerPort": port}],
        "startupProbe": {
            **probe,
            "periodSeconds": period,
            "timeoutSeconds": period,
            "failureThreshold": max(1, spec.evaluation.timeout_seconds // period),
        },
        "resources": resources(spec.evaluation.resources),
        "securityContext": container_security_context(read_only_root=False),
        "volumeMounts": [
            {"name": "scratch", "mountPath": SCRATCH_DIR, "readOnly": True},
            {"name": "shm", "mountPath": SHM_DIR},
            {"name": "tmp", "mountPath": TMP_DIR},
            *(model_mounts if adapter else []),
        ],
    }
