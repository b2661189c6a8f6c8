"""A whole search on this machine: resolve the spec's models, run the loop, export the best merge."""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..catalogue.contracts import HISTORY_FILE, MERGED_DIR, SCORES_FILE, SPEC_FILE, SUMMARY_FILE
from ..catalogue.engines import ENGINES, LOCAL_ENGINES
from ..evaluate.cache import ScoreCache
from ..evaluate.engines.resident import ResidentEngine
from ..evaluate.engines.served import ServedEngine, SwappingWorker
from ..executors.local import LocalExecutor
from ..merge.export import export_merge
from ..merge.recipe import MergeRecipe
from ..report.model_card import lineage_for, write_model_card
from ..search.optimizer import make_optimizer
from ..spec.merge_search import MergeSearch, MergeSearchSpec
from .history import JsonlHistory
from .loop import SearchFailed, SearchOutcome, SearchRunner
from .prepare import model_a_dir, prepare, resolve
from .sink import StatusSink

SERVER_LOGS = "server"  # the local server's logs, inside the run directory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalRun:
    outcome: SearchOutcome
    run_dir: Path
    merged_dir: Path | None
    held_out: dict[str, float]


def run_local(search: MergeSearch, run_dir: Path, sink: StatusSink | None = None, export: bool = True,
              worker: SwappingWorker | None = None) -> LocalRun:
    """The search, its held-out scores and the exported best merge. With engine vllm, one server (`worker`, else
    one started here) scores every candidate and is stopped when the run ends, fails or is interrupted."""
    with ExitStack() as stack:
        if worker is None:
            worker = stack.enter_context(evaluation_worker(search.spec, run_dir / SERVER_LOGS))
        return _run_local(search, run_dir, sink, export, worker)


def _run_local(search: MergeSearch, run_dir: Path, sink: StatusSink | None, export: bool,
               worker: SwappingWorker | None) -> LocalRun:
    spec = search.spec
    run_dir.mkdir(parents=True, exist_ok=True)
    _pin_spec(run_dir, search)
    prepared = prepare(spec)
    genome = prepared.genome
    cache = ScoreCache(run_dir / SCORES_FILE)
    executor = LocalExecutor(lambda: make_engine(spec, spec.objectives, cache, worker).score, lookahead=worker is not None)
    runner = SearchRunner(spec, genome,
                          lambda: make_optimizer(genome, spec.search, len(spec.objectives), prepared.seed_recipes),
                          executor, JsonlHistory(run_dir / HISTORY_FILE), sink)
    try:
        outcome = runner.run()
    except SearchFailed as error:  # the report of a failed run says why it stopped
        _write_summary(run_dir, runner.outcome(f"search failed: {error}"), None, {})
        raise
    merged_dir = None
    held_out: dict[str, float] = {}
    if outcome.best is not None:
        recipe = MergeRecipe.from_dict(outcome.best.recipe)
        if spec.held_out:
            held_out = make_engine(spec, spec.held_out, cache, worker).score(recipe)
        if export:
            merged_dir = export_merge(recipe, prepared.base, prepared.experts, _output_dir(spec, run_dir))
    _write_summary(run_dir, outcome, merged_dir, held_out)
    if merged_dir is not None:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
        write_model_card(merged_dir, spec, summary, lineage_for(spec), name=search.metadata.name)
    return LocalRun(outcome, run_dir, merged_dir, held_out)


@contextmanager
def evaluation_worker(spec: MergeSearchSpec, log_dir: Path) -> Iterator[SwappingWorker | None]:
    """The one server a local run scores through, stopped on the way out; None where candidates score in-process.

    A served engine needs a local build of its server (the catalogue's cpu_build, or $EVOMERGE_VLLM_PYTHON);
    data-flow candidates change the layer count, which an in-place reload cannot take, so they score in-process.
    """
    engine = ENGINES[spec.evaluation.engine]
    if not engine.served:
        yield None
        return
    if engine.name not in LOCAL_ENGINES:
        raise ValueError(
            f"spec.evaluation.engine: {engine.name} has no server a local run can start (it starts one server per "
            f"candidate in the cluster); set engine: {' or '.join(LOCAL_ENGINES)}"
        )
    if spec.merge.data_flow.enabled:
        log.info("data-flow candidates change the layer count, which %s cannot reload in place: scoring in-process",
                 engine.name)
        yield None
        return
    base_dir = resolve("spec.baseModel.uri", spec.base_model.uri) if spec.base_model else None
    expert_dirs = {e.name: resolve(f"spec.experts[{i}].uri", e.uri) for i, e in enumerate(spec.experts)}
    worker = SwappingWorker.local(base_dir, expert_dirs, log_dir, spec.allow_pickle)
    try:
        yield worker
    finally:
        worker.close()


def make_engine(spec: MergeSearchSpec, objectives, cache: ScoreCache | None = None,
                worker: SwappingWorker | None = None) -> ResidentEngine | ServedEngine:
    """The engine for a spec's models, scoring the given objectives (subsample from spec.search.seed): through the
    worker's server when one is given (engine vllm), else in-process."""
    if worker is not None:
        return worker.engine(objectives, spec.evaluation.include_paths, seed=spec.search.seed, cache=cache)
    return ResidentEngine.from_spec(
        spec, objectives,
        resolve("spec.baseModel.uri", spec.base_model.uri) if spec.base_model else None,
        {e.name: resolve(f"spec.experts[{i}].uri", e.uri) for i, e in enumerate(spec.experts)},
        cache=cache, model_a_dir=model_a_dir(spec),
    )


def _output_dir(spec: MergeSearchSpec, run_dir: Path) -> Path:
    if spec.storage.output is not None:
        return local_path_for_output(spec.storage.output.uri)
    return run_dir / MERGED_DIR


def local_path_for_output(uri: str) -> Path:
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if "://" in uri:
        raise ValueError(f"storage.output.uri {uri!r}: a local run writes to a path or file:// URI")
    return Path(uri).expanduser()


def _pin_spec(run_dir: Path, search: MergeSearch) -> None:
    """A run directory belongs to one spec: resuming with a changed spec would replay the wrong history."""
    pinned = run_dir / SPEC_FILE
    current = json.dumps(search.spec.to_wire(), sort_keys=True)
    if pinned.exists():
        if json.loads(pinned.read_text()) != json.loads(current):
            raise ValueError(f"{run_dir} holds a run of a different spec; choose another --run-dir or delete it")
        return
    pinned.write_text(current)


def _write_summary(run_dir: Path, outcome: SearchOutcome, merged_dir: Path | None, held_out: dict[str, float]) -> None:
    best = outcome.best
    summary = {
        "stopReason": outcome.stop_reason,
        "evaluations": outcome.evaluations,
        "failedEvaluations": outcome.failed,
        "generations": len(outcome.summaries),
        "best": None if best is None else {
            "candidate": best.id, "fitness": best.fitness, "scores": best.scores, "recipe": best.recipe,
        },
        "heldOut": held_out,
        "mergedModel": str(merged_dir) if merged_dir else None,
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
