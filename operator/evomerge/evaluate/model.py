"""Scoring one finished checkpoint — `evomerge evaluate MODEL --task …` and evaluation pods of served merges."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..catalogue.engines import ENGINES, TRANSFORMERS
from ..spec.merge_search import Objective
from .engines import make_server_lm
from .engines.options import EngineOptions
from .items import ItemScores
from .quiet import quiet_libraries
from .tasks import TaskSuite


def evaluate_model(
    model_dir: Path,
    objectives: Sequence[Objective],
    include_paths: Sequence[str] = (),
    engine_options: EngineOptions | Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
) -> dict[str, float]:
    """The objectives' metrics for the model in `model_dir`, keyed "task/metric".

    Engine transformers loads the model here; tgi and vllm score the server at engine_options.url and
    read only the tokenizer from `model_dir` (it must be the served model's). Subsamples (`limit`) are
    drawn from `seed`, as in a search, so the numbers compare with the search's.
    """
    options = engine_options if isinstance(engine_options, EngineOptions) else EngineOptions.from_mapping(engine_options)
    if not options.verbose:
        quiet_libraries()
    from transformers import AutoTokenizer

    suite = TaskSuite.build(objectives, include_paths, seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    if not ENGINES[options.engine].served:
        return suite.run(_resident_lm(Path(model_dir), tokenizer, options))
    lm = make_server_lm(options, tokenizer, suite.greedy_tasks)
    try:
        return suite.run(lm)
    finally:
        lm.close()


def evaluate_items(
    model_dirs: Mapping[str, Path],
    objectives: Sequence[Objective],
    include_paths: Sequence[str] = (),
    *,
    device: str = "auto",
    batch_size: int = 8,
    seed: int = 0,
) -> dict[str, tuple[dict[str, float], ItemScores]]:
    """Each checkpoint's metrics and per-item results, all on the very same items (one TaskSuite, loaded
    once): the inputs of a paired test between them. Scored in-process, one model in memory at a time."""
    quiet_libraries()
    from transformers import AutoTokenizer

    suite = TaskSuite.build(objectives, include_paths, seed)
    options = EngineOptions(engine=TRANSFORMERS.name, device=device, batch_size=batch_size)
    scored = {}
    for name, model_dir in model_dirs.items():
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        scored[name] = suite.run_items(_resident_lm(Path(model_dir), tokenizer, options))
    return scored


def _resident_lm(model_dir: Path, tokenizer: Any, options: EngineOptions) -> Any:
    from transformers import AutoModelForCausalLM

    from .engines.resident import load_hflm, pick_device

    device = pick_device(options.device)
    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=False).to(device).eval()
    return load_hflm(model, tokenizer, options.batch_size, device)
