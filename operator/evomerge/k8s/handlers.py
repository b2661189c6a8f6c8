"""kopf decorators only: which events reach which function of operator_main (the work is done there).

MergeSearch and MergedModel are reconciled from low-level watch events whenever their spec has a generation
the status has not observed yet: no kopf bookkeeping annotations on them and half the tail latency of cause
handlers under load (benchmarks/operator_latency.py). What happens later — a child Job finishing — comes through the
Job events; failures are retried by operator_main's periodic resync, which also runs once at start-up.

Every search event first passes the async `search_event`, in the watch's order: it tells reconcile_search
which body is the newest, so the reconcile of that body need not read the search again.

Handlers that only read the event (metrics) are async, and Job events nothing waits on are filtered out
before dispatch: kopf runs sync handlers on its thread pool, and under a burst a cheap handler queued
behind the reconciles there delays the reconcile of its own object (kopf runs one object's handlers in turn).

No delete handlers and no timers or daemons on our resources: those would put kopf finalizers on them, and
objects could not be deleted while the operator is down. Children go by ownerReferences instead.
"""

from __future__ import annotations

from typing import Any

import kopf

from ..spec.base import API_GROUP, API_VERSION
from . import operator_main as main

SEARCHES = (API_GROUP, API_VERSION, "mergesearches")
MODELS = (API_GROUP, API_VERSION, "mergedmodels")
EXPERTS = (API_GROUP, API_VERSION, "experts")


def _context(memo: Any) -> main.OperatorContext:
    return memo.context


def _unobserved(type: str | None, body: kopf.Body, **_: Any) -> bool:
    return type != "DELETED" and body.get("metadata", {}).get("generation") != (body.get("status") or {}).get("observedGeneration")


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    main.configure(settings)
    main.start_resync(_context(memo))


@kopf.on.cleanup()
def cleanup(memo: Any, **_: Any) -> None:
    _context(memo).stop.set()


@kopf.on.login()
def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
    return main.connection_info(_context(memo).kube)


@kopf.on.event(*SEARCHES)
async def search_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    main.search_seen(_context(memo), type, dict(body))


@kopf.on.event(*SEARCHES, when=_unobserved)
def search_changed(body: kopf.Body, memo: Any, **_: Any) -> None:
    main.reconcile_search_event(_context(memo), dict(body))


@kopf.on.event(*MODELS)
async def model_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    if type == "DELETED":  # nothing more to remember about it
        _context(memo).state.forget(body["metadata"]["uid"])
    _context(memo).metrics.observe_model(dict(body))


@kopf.on.event(*MODELS, when=_unobserved)
def model_changed(body: kopf.Body, memo: Any, **_: Any) -> None:
    main.reconcile_model_event(_context(memo), dict(body))


# Experts change by their labels too (no new generation), and rarely: kopf's cause handlers see both.
@kopf.on.resume(*EXPERTS)
@kopf.on.create(*EXPERTS)
@kopf.on.update(*EXPERTS)
def expert_changed(body: kopf.Body, memo: Any, **_: Any) -> None:
    main.reconcile_expert_body(_context(memo), dict(body))


@kopf.on.event(*EXPERTS)
def expert_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    if type == "DELETED":  # no finalizer on Experts: the watch's DELETED event is the only news of a deletion
        main.reconcile_expert_body(_context(memo), dict(body))


def _job_matters(type: str | None, body: kopf.Body, **_: Any) -> bool:
    return main.job_matters(type, dict(body))


@kopf.on.event("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": "evomerge-operator"}, when=_job_matters)
def job_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    main.on_job_event(_context(memo), type, dict(body))
