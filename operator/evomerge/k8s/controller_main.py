"""`evomerge controller`: one epoch of a MergeSearch, run by the runner with the Kubernetes executor.

It reads what the operator froze for the epoch (effective spec, elite seeds, counters), prepares the search as
`evomerge run` does (runner/prepare.py: inputs checked, depth, genome, spec.search.seeds), adds those elites, replays the history ConfigMaps, and goes on submitting evaluation
Jobs until the search stops. Killed at any point, its replacement (the Job's next pod) replays the same events
and continues with nothing lost. With storage.output set, it keeps the run report there too
(search_report.py) and status.report links it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..evaluate.placement import asks_for_work, candidates_per_pod
from ..executors.kubernetes import KubernetesExecutor
from ..merge.recipe import MergeRecipe
from ..search.genome import Genome
from ..spec.loading import validate_document
from ..spec.merge_search import MergeSearch, MergeSearchSpec
from .client import Kube
from .conditions import HISTORY_LOST
from .controller_events import ControllerEvents
from .evaluation_jobs import evaluation_executor
from .evaluation_workers import WorkerPool
from .history_configmap import ConfigMapHistory
from .naming import epoch_configmap_name
from .render_search import POD_IP_ENV, read_epoch_configmap
from .search_compare import compare_in_cluster
from .search_report import SearchReport, earlier_epochs
from .settings import ClusterSettings
from .status_sink import SearchStatusSink

log = logging.getLogger(__name__)


class ControllerError(RuntimeError):
    """The epoch cannot run as specified; the message says what to fix (exit code 2: no retry helps)."""


@dataclass(frozen=True)
class ControllerResult:
    stop_reason: str
    evaluations: int
    best: float | None


def elite_vectors(genome: Genome, recipes: list[dict[str, Any]]) -> tuple[np.ndarray | None, list[str]]:
    """Elite recipes of earlier epochs as vectors of this epoch's genome, and why any could not be used.

    Experts new to this epoch enter at each gene's low bound (weight 0 by default: the elite's merge
    unchanged); experts gone since are dropped.
    """
    from ..runner.seed_recipes import over_genome

    rows, notes = [], []
    for data in recipes:
        recipe = MergeRecipe.from_dict(data)
        if recipe.method != genome.method:
            notes.append(f"elite not seeded: it merges with {recipe.method}, this epoch with {genome.method}")
            continue
        try:
            rows.append(genome.encode(over_genome(recipe, genome), clip=True))
        except ValueError as error:
            notes.append(f"elite not seeded: {error}")
    return (np.array(rows) if rows else None), notes


def _stacked(*parts: np.ndarray | None) -> np.ndarray | None:
    rows = [p for p in parts if p is not None]
    return np.concatenate(rows) if rows else None


def check_memory(spec: MergeSearchSpec) -> None:
    """Refuse, before any evaluation Job runs, a search whose evaluation worker cannot hold what it must
    (evaluate/memory_plan.py, from the checkpoints' sizes): the message names the field to change."""
    from ..evaluate.memory_plan import ModelSize, plan_memory
    from ..models.uris import local_path

    if spec.merge.data_flow.enabled:  # a path merges nothing: its worker holds the path models, as any model
        return
    reference = spec.base_model.uri if spec.base_model else spec.experts[0].uri
    problems = plan_memory(spec, ModelSize.of(local_path(reference), spec.allow_pickle)).problems
    if problems:
        raise ControllerError("; ".join(problems))


def _count_start(kube: Kube, search: dict[str, Any], controller_job: str | None) -> None:
    """status.controllerStarts: the pods of this controller Job so far, so the operator can say "restarting (n)"
    while the Job waits for its next pod."""
    status = search.get("status") or {}
    starts = int(status.get("controllerStarts") or 0) + 1 if status.get("controllerJob") == controller_job else 1
    meta = search["metadata"]
    kube.patch_status("MergeSearch", meta["namespace"], meta["name"], {"controllerStarts": starts})


def say_if_lost(kube: Kube, search: dict[str, Any], epoch: int, offsets: dict[str, int], history: ConfigMapHistory) -> None:
    """History deleted while no controller ran cannot be rebuilt: say so (a Warning, and status.historyLost, which the
    operator turns into the Degraded condition) rather than resume silently."""
    replayed = history.events()
    status = search.get("status") or {}
    done = int(status.get("evaluations") or 0) - int(offsets.get("evaluations", 0))
    if history.lost is None and not replayed and done > 0 and int(status.get("epoch") or 0) == epoch:
        history.lost = (f"the history of epoch {epoch} is gone ({done} evaluations recorded in status): the epoch starts "
                        "over from its first generation")
    if history.lost is not None:
        log.warning(history.lost)
        ControllerEvents(kube, search).post("Warning", HISTORY_LOST, history.lost)
        meta = search["metadata"]
        kube.patch_status("MergeSearch", meta["namespace"], meta["name"], {"historyLost": history.lost})


def _executor(kube: Kube, search: dict[str, Any], epoch: int, spec: MergeSearchSpec, settings: ClusterSettings,
              owner: dict[str, Any]) -> tuple[KubernetesExecutor | WorkerPool, int]:
    """The epoch's executor and how many candidates async mode keeps in flight: one per pod for pods that ask for
    work (they live for the epoch), else enough to fill every pod's batch (one server start per batch)."""
    if asks_for_work(spec):
        pod_ip = os.environ.get(POD_IP_ENV)
        if not pod_ip:
            raise ControllerError(f"${POD_IP_ENV} is not set: the controller Job renders it from the downward API "
                                  "(status.podIP) for async searches whose pods ask it for work")
        return WorkerPool(kube, search, epoch, spec, settings, owner, pod_ip), spec.evaluation.parallelism
    return (evaluation_executor(kube, search, epoch, spec, settings, owner),
            spec.evaluation.parallelism * candidates_per_pod(spec))


def run_controller(kube: Kube, namespace: str, name: str, epoch: int, settings: ClusterSettings,
                   controller_job: str | None = None) -> ControllerResult:
    """Run the epoch to its end. `controller_job` (the pod's own Job) owns the evaluation Jobs when given."""
    from ..runner.loop import SearchFailed, SearchRunner
    from ..runner.prepare import prepare
    from ..search.optimizer import make_optimizer

    search = kube.get("MergeSearch", namespace, name)
    if search is None:
        raise ControllerError(f"MergeSearch {namespace}/{name} does not exist")
    configmap = kube.get("ConfigMap", namespace, epoch_configmap_name(name, epoch))
    if configmap is None:
        raise ControllerError(f"ConfigMap {namespace}/{epoch_configmap_name(name, epoch)} of epoch {epoch} is missing")
    document, seeds, offsets = read_epoch_configmap(configmap)
    spec = validate_document(document, f"epoch {epoch} of MergeSearch {namespace}/{name}", MergeSearch).spec
    owner = (kube.get("Job", namespace, controller_job) if controller_job else None) or search

    prepared = prepare(spec)
    check_memory(spec)
    genome = prepared.genome
    elites, notes = elite_vectors(genome, seeds)
    for note in notes:
        log.warning(note)
    vectors = _stacked(elites, prepared.seed_recipes)  # the elites first: CMA-ES starts at the first
    _count_start(kube, search, controller_job)
    executor, in_flight = _executor(kube, search, epoch, spec, settings, owner)
    history = ConfigMapHistory(kube, search, epoch)
    say_if_lost(kube, search, epoch, offsets, history)
    report = None
    if spec.storage.output is not None:  # the report lives beside the exported merges
        report = SearchReport(kube, search, epoch, spec, spec.storage.output.uri, settings, history.recorded,
                              offsets, earlier_epochs(kube, search, epoch))
    shown = spec.objectives[0].key if len(spec.objectives) == 1 else None  # BEST in that objective's own direction
    sink = SearchStatusSink(kube, search, offsets, report=report, shown_objective=shown)
    runner = SearchRunner(
        spec, genome, lambda: make_optimizer(genome, spec.search, len(spec.objectives), vectors), executor,
        history, sink, in_flight=in_flight,
    )
    sink.bind(runner)
    try:
        outcome = runner.run()
    except SearchFailed as error:
        sink.finish(runner.outcome(f"search failed: {error}"))
        raise
    finally:
        executor.close()
        if report is not None:
            report.close()
    output = spec.storage.output
    if report is not None and output is not None and output.compare_references and outcome.best is not None:
        message = (f"the search is done; scoring each of {len(spec.experts)} experts alone and their uniform merge for the "
                   "report's comparison table (storage.output.compareReferences: false skips this)")
        log.info(message)
        ControllerEvents(kube, search).post("Normal", "ScoringReferences", message)
        report.comparison = compare_in_cluster(kube, search, epoch, spec, settings, owner, outcome.best)
    sink.finish(outcome)
    return ControllerResult(outcome.stop_reason, outcome.evaluations, outcome.best.fitness if outcome.best else None)

