"""`evomerge operator`: kopf with evomerge's handlers, one replica, namespaced or cluster-wide.

kopf watches the resources and calls `handlers.py`; the work happens here and in the reconcile modules,
through the one API client of `client.py`. A periodic resync reconciles every object again, because Job
events are not retried by kopf and a missed or failed one must not strand a search. A request the API server
refuses for good (RBAC, quota, admission) is put on the object by the reconcile itself (api_failures.py);
here every failure is counted and logged, and left to the resync.

Under a burst the API server's CPU is what every reconcile waits for (benchmarks/operator_latency.py), so
Events wait while a burst of reconciles is in flight (plan.EventQueue, at most its patience), and kopf keeps
no copy of bodies it never diffs (ExpertDiffBase).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import kopf

from ..spec.base import API_GROUP
from . import reconcile_expert, reconcile_model, reconcile_search
from .client import ApiError, Kube
from .jobs import ACTIVE, FAILED, job_state, pod_selector, termination_message
from .metrics import OperatorMetrics
from .naming import COMPONENT_LABEL, CONTROLLER, EVALUATION, EXPORT, MANAGED_BY, MODEL_LABEL, SEARCH_LABEL, SEARCH_UID_LABEL
from .plan import EventQueue
from .reconcile_state import ReconcileState
from .settings import ClusterSettings

log = logging.getLogger(__name__)
PREFIX = API_GROUP


@dataclass
class OperatorContext:
    """Shared by every handler through kopf's memo."""

    kube: Kube
    settings: ClusterSettings
    metrics: OperatorMetrics
    events: EventQueue
    namespaces: list[str] = field(default_factory=list)  # empty: cluster-wide
    resync_seconds: float = 30.0
    stop: threading.Event = field(default_factory=threading.Event)
    state: ReconcileState = field(default_factory=ReconcileState)  # locks, caches and watched versions of the reconciles


class ExpertDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds a diff base (a deep copy of the body) on every watch event of every kind, but only the
    Expert handlers react to changes: for the rest — searches, models and every Job event of a burst — the
    copy was a tenth of the operator's CPU and nothing read it."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        if body.get("kind") != "Expert":
            return kopf.BodyEssence()
        return super().build(body=body, extra_fields=extra_fields)


def configure(settings: kopf.OperatorSettings, worker_threads: int = 32) -> None:
    """Own annotation prefix and finalizer name, quiet events, and a watch only on our own Jobs."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = ExpertDiffBase(prefix=PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "evomerge-operator"
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.networking.request_timeout = 30
    settings.execution.max_workers = worker_threads
    settings.scanning.disabled = True
    settings.watching.label_selectors["batch", "v1", "jobs"] = f"app.kubernetes.io/managed-by={MANAGED_BY}"


def quiet_logs(verbose: bool) -> None:
    """Warnings only by default: kopf logs every handler call and aiohttp every probe at INFO."""
    level = logging.DEBUG if verbose else logging.WARNING
    for name in ("kopf.objects", "aiohttp.access"):
        logging.getLogger(name).setLevel(level)


def connection_info(kube: Kube) -> kopf.ConnectionInfo:
    """kopf logs in with the same credentials as our client (kubeconfig file or service account)."""
    config = kube.api_client.configuration
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=config.host, ca_path=config.ssl_ca_cert, insecure=not config.verify_ssl, scheme=scheme, token=token,
        certificate_path=config.cert_file, private_key_path=config.key_file,
    )


def _timed(context: OperatorContext, kind: str, work: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        with context.events.deferring():
            return work()
    except ApiError as error:
        context.metrics.reconcile_errors.labels(kind).inc()
        raise kopf.TemporaryError(f"{kind}: {error}", delay=5) from None
    except Exception:
        context.metrics.reconcile_errors.labels(kind).inc()
        raise
    finally:
        context.metrics.reconcile_duration.labels(kind).observe(time.perf_counter() - started)


def reconcile_search_body(context: OperatorContext, body: dict[str, Any]) -> None:
    plan = _timed(context, "MergeSearch", lambda: reconcile_search.reconcile(context.kube, body, context.settings, context.state,
                                                                                  context.events))
    selects = (body.get("spec") or {}).get("expertSelector") is not None
    if selects and any(e.reason == "EpochStarted" for e in plan.events):
        _timed(context, "Expert", lambda: reconcile_expert.refresh_selected(context.kube, body["metadata"]["namespace"]))


def reconcile_model_body(context: OperatorContext, body: dict[str, Any]) -> None:
    _timed(context, "MergedModel", lambda: reconcile_model.reconcile(context.kube, body, context.settings, context.state,
                                                                                  context.events))


def search_seen(context: OperatorContext, event_type: str | None, body: dict[str, Any]) -> None:
    """Every watch event of a search, in order: the gauges, and which body a reconcile may trust unread."""
    context.state.watched.seen(event_type, body)
    if event_type == "DELETED":
        context.state.forget(body["metadata"]["uid"])
    context.metrics.observe_search(event_type, body)


def reconcile_search_event(context: OperatorContext, body: dict[str, Any]) -> None:
    """From a watch event (not retried by kopf): a failure is logged, counted, and left to the resync."""
    _logged(lambda: reconcile_search_body(context, body), "MergeSearch", body)


def reconcile_model_event(context: OperatorContext, body: dict[str, Any]) -> None:
    _logged(lambda: reconcile_model_body(context, body), "MergedModel", body)


def _logged(work: Callable[[], None], kind: str, body: dict[str, Any]) -> None:
    try:
        work()
    except (kopf.TemporaryError, ApiError) as error:
        meta = body["metadata"]
        log.warning("reconciling %s %s/%s failed, the resync retries it: %s", kind, meta.get("namespace"), meta["name"], error)


def reconcile_expert_body(context: OperatorContext, body: dict[str, Any]) -> None:
    searches = _timed(context, "Expert", lambda: reconcile_expert.reconcile_expert(context.kube, body))
    for search in searches:
        reconcile_search_body(context, search)


def job_matters(event_type: str | None, job: dict[str, Any]) -> bool:
    """Only endings matter: a Job's own progress (pods created, active counts) changes nothing for its owner
    or its timing, and one that vanished early is recreated by the next resync."""
    return event_type != "DELETED" and job_state(job).phase != ACTIVE


def on_job_event(context: OperatorContext, event_type: str | None, job: dict[str, Any]) -> None:
    """A child Job changed: reconcile its owner when it finished (controller, export), or time it (evaluation)."""
    if not job_matters(event_type, job):
        return
    meta = job["metadata"]
    labels = meta.get("labels") or {}
    component = labels.get(COMPONENT_LABEL)
    phase = job_state(job).phase
    try:
        if component == EVALUATION:
            if context.metrics.observe_evaluation_job(job) and phase == FAILED:
                _warn_evaluation_failed(context, job)
        elif component == CONTROLLER and SEARCH_LABEL in labels:
            search = context.kube.get("MergeSearch", meta["namespace"], labels[SEARCH_LABEL])
            if search is not None and search["metadata"]["uid"] == labels.get(SEARCH_UID_LABEL):
                reconcile_search_body(context, search)
        elif component == EXPORT and MODEL_LABEL in labels:
            model = context.kube.get("MergedModel", meta["namespace"], labels[MODEL_LABEL])
            if model is not None:
                reconcile_model_body(context, model)
    except (kopf.TemporaryError, ApiError) as error:  # Job events are not retried: the resync comes back
        log.warning("reconciling after %s of Job %s/%s: %s", event_type, meta["namespace"], meta["name"], error)


def _warn_evaluation_failed(context: OperatorContext, job: dict[str, Any]) -> None:
    """A Warning on the search for every failed evaluation Job, with what its scorer said."""
    meta, labels = job["metadata"], job["metadata"].get("labels") or {}
    search = context.kube.get("MergeSearch", meta["namespace"], labels.get(SEARCH_LABEL, ""))
    if search is None or search["metadata"]["uid"] != labels.get(SEARCH_UID_LABEL):
        return
    pods = context.kube.list("Pod", meta["namespace"], pod_selector(meta["name"]))
    event = reconcile_search.evaluation_failure(job, termination_message(pods, "score"))
    context.events.put(search, event)


def resync(context: OperatorContext) -> None:
    """Reconcile every MergeSearch and MergedModel now; errors are logged and left to the next pass."""
    context.state.forget_cache()
    for namespace in context.namespaces or [None]:
        for kind, reconcile in (("MergeSearch", reconcile_search_body), ("MergedModel", reconcile_model_body)):
            try:
                bodies = context.kube.list(kind, namespace)
            except ApiError as error:
                log.warning("resync: listing %s: %s", kind, error)
                continue
            for body in bodies:
                try:
                    reconcile(context, body)
                except (kopf.TemporaryError, ApiError) as error:
                    log.warning("resync of %s %s/%s: %s", kind, body["metadata"]["namespace"], body["metadata"]["name"], error)


def start_resync(context: OperatorContext) -> threading.Thread:
    """A pass now (what happened while no operator ran) and then every resync_seconds."""
    def loop() -> None:
        while True:
            try:
                resync(context)
            except Exception:  # noqa: BLE001 - a timeout or a lost connection must not end the resyncs for good
                log.exception("resync failed; the next pass retries")
            if context.stop.wait(context.resync_seconds):
                return

    thread = threading.Thread(target=loop, name="evomerge-resync", daemon=True)
    thread.start()
    return thread


def run(
    namespaces: list[str],
    kubeconfig: str | None = None,
    metrics_port: int | None = None,
    liveness: str | None = None,
    resync_seconds: float = 30.0,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
    settings: ClusterSettings | None = None,
) -> None:
    """Run the operator until stopped (SIGTERM, or `stop_flag` when embedded in a test or benchmark).

    `settings` default to the EVOMERGE_* environment the chart gives the operator's container.
    """
    from . import handlers  # noqa: F401  (registers the handlers with kopf)

    kube = Kube.connect(kubeconfig)
    context = OperatorContext(kube, settings or ClusterSettings.from_env(), OperatorMetrics(),
                              EventQueue(kube, reconcile_search.COMPONENT), list(namespaces), resync_seconds)
    context.metrics.count_requests(context.kube.request_counts)
    if metrics_port is not None:
        context.metrics.serve(metrics_port)
    try:
        kopf.run(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            liveness_endpoint=liveness,
            memo=kopf.Memo(context=context),
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        context.stop.set()
        context.events.close()
        context.kube.close()
