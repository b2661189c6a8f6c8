"""The scorer of an evaluation pod: score a batch of recipes, print compact JSON of their scores.

Engine `transformers`: one process holds the experts resident and merges + scores every recipe of the
batch. Served engines: the pod's init container already merged the first candidate and the sidecar serves
it; an engine whose server swaps weights in place (catalogue/engines.py) takes the batch's later
candidates from this process (engines/served.py), one server start for the whole batch, and any other serves
exactly one. Output is one JSON list, one entry per recipe, in order:
{"id": ..., "scores": {"task/metric": value}} or {"id": ..., "error": "one line"} — small enough for a
container termination message, so pods need no API token to report. The pod runs it through
`evomerge evaluate-batch` (evaluate/worker.py).
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from ..catalogue.engines import ENGINES
from ..merge.recipe import MergeRecipe
from ..models.uris import local_path
from ..spec.merge_search import MergeSearchSpec
from .cache import ScoreCache
from .engines.options import EngineOptions
from .placement import candidates_per_pod, swaps_in_pod

SERVER_URL_ENV = "EVOMERGE_SERVER_URL"


def score_batch(
    recipes: list[dict[str, Any]],
    spec: MergeSearchSpec,
    *,
    held_out: bool = False,
    model_dir: Path | None = None,
    server_url: str | None = None,
    cache: ScoreCache | None = None,
    adapter: str | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    more: Callable[[], dict[str, Any] | None] | None = None,
) -> list[dict[str, Any]]:
    """Per recipe {"id", "scores"} or {"id", "error"}; items are {"id": str, "recipe": MergeRecipe.to_dict()}.

    `held_out` scores spec.heldOut instead of spec.objectives; `model_dir` and `server_url` are the merged
    checkpoint (for its tokenizer) and the server for served engines; `adapter` names the LoRA adapter the
    server hosts the candidate as (then `model_dir` is that adapter, with the base's tokenizer).
    `on_result` is called with each entry as soon as it is known, in order. `more` gives further items, one at
    a time, until it returns None: an async search's pod that asks its controller for work (served engines that
    swap in place only).
    """
    objectives = spec.held_out if held_out else spec.objectives
    if not objectives:
        return [{"id": _id(item, i), "error": "the spec lists no heldOut objectives"} for i, item in enumerate(recipes)]
    parsed: list[tuple[str, MergeRecipe | str]] = [_parse(item, i) for i, item in enumerate(recipes)]
    results: list[dict[str, Any]] = []

    def record(item: dict[str, Any]) -> None:
        results.append(item)
        if on_result is not None:
            on_result(item)

    try:
        if ENGINES[spec.evaluation.engine].served:
            _score_served(parsed, spec, objectives, model_dir, server_url, adapter, record, more)
        elif more is not None:
            raise ValueError(f"engine {spec.evaluation.engine} scores in-process: it asks for no further work")
        else:
            _score_resident(parsed, spec, objectives, cache, record)
    except Exception as error:  # a broken setup fails every candidate not scored yet, with the reason in each entry
        for cid, _ in parsed[len(results):]:
            record({"id": cid, "error": _one_line(error)})
    return results


def input_dirs(spec: MergeSearchSpec) -> tuple[Path | None, dict[str, Path]]:
    """(base, experts by name) as local directories, read where the pod mounts them."""
    base_dir = local_path(spec.base_model.uri) if spec.base_model else None
    return base_dir, {e.name: local_path(e.uri) for e in spec.experts}


def _score_resident(parsed: list[tuple[str, MergeRecipe | str]], spec: MergeSearchSpec, objectives: Sequence[Any],
                    cache: ScoreCache | None, record: Callable[[dict[str, Any]], None]) -> None:
    from .engines.resident import ResidentEngine

    engine = ResidentEngine.from_spec(spec, objectives, *input_dirs(spec), cache=cache)
    for cid, recipe in parsed:
        record(_scored(cid, recipe, engine.score))


def _score_served(parsed: list[tuple[str, MergeRecipe | str]], spec: MergeSearchSpec, objectives: Sequence[Any],
                  model_dir: Path | None, server_url: str | None, adapter: str | None,
                  record: Callable[[dict[str, Any]], None], more: Callable[[], dict[str, Any] | None] | None) -> None:
    """The first candidate is the one the pod's merge step wrote into `model_dir`; later ones (the batch's, then
    those `more` gives) are swapped in through the pod's server (engines/served.py), their weights written next
    to `model_dir`."""
    from .engines.served import SidecarServer, SwappingWorker
    from .tasks import TaskSuite

    engine = spec.evaluation.engine
    if len(parsed) > candidates_per_pod(spec):
        raise ValueError(f"engine {engine} scores at most {candidates_per_pod(spec)} candidates per server start for this "
                         f"search (placement.py); got a batch of {len(parsed)}")
    url = server_url or os.environ.get(SERVER_URL_ENV)
    if not url or model_dir is None:
        raise ValueError(f"engine {engine} needs --server-url (or ${SERVER_URL_ENV}) and --model-dir (the merged checkpoint)")
    if more is not None and not swaps_in_pod(spec):
        raise ValueError(f"engine {engine} serves one candidate per server start here: it cannot ask for more work")
    options = EngineOptions(engine=engine, url=url, batch_size=spec.evaluation.batch_size, device=spec.evaluation.device,
                            timeout_s=float(spec.evaluation.timeout_seconds), adapter=adapter)
    model_dir = Path(model_dir)
    worker = SwappingWorker(SidecarServer(model_dir, url), options, *input_dirs(spec), spec.allow_pickle,
                            scratch=model_dir.parent)
    suite = TaskSuite.build(objectives, spec.evaluation.include_paths, spec.search.seed)
    try:
        worker.connect(suite)
        for index, (cid, recipe) in enumerate(parsed):
            following = next((r for _, r in parsed[index + 1:index + 2] if isinstance(r, MergeRecipe)), None)
            record(_scored(cid, recipe, lambda r: worker.score(r, suite, served=index == 0, then=following)))
        while more is not None and (item := more()) is not None:
            cid, recipe = _parse(item, len(parsed))
            record(_scored(cid, recipe, lambda r: worker.score(r, suite)))
    finally:
        worker.close()


def _scored(cid: str, recipe: MergeRecipe | str, score: Callable[[MergeRecipe], dict[str, float]]) -> dict[str, Any]:
    """One entry: the recipe's scores, or why it has none (one broken candidate must not sink the batch)."""
    if isinstance(recipe, str):
        return {"id": cid, "error": recipe}
    try:
        return {"id": cid, "scores": score(recipe)}
    except Exception as error:  # noqa: BLE001 - reported as this candidate's error
        return {"id": cid, "error": _one_line(error)}


def _parse(item: Any, index: int) -> tuple[str, MergeRecipe | str]:
    cid = _id(item, index)
    try:
        return cid, MergeRecipe.from_dict(item["recipe"])
    except (KeyError, TypeError, ValueError) as error:
        return cid, f"recipes[{index}]: not a {{id, recipe}} item with a MergeRecipe ({_one_line(error)})"


def _id(item: Any, index: int) -> str:
    return str(item.get("id", index)) if isinstance(item, dict) else str(index)


def _one_line(error: BaseException) -> str:
    return traceback.format_exception_only(type(error), error)[-1].strip()
