"""The resident transformers engine: one model object, re-merged in place for every candidate.

Experts stay in memory (ResidentMerger), the model and tokenizer are loaded once, and the tasks with
their datasets and subsample are built once (TaskSuite): per candidate only the weights are rewritten
and lm-eval runs its batched forward passes. For a data-flow search the path models are loaded once
instead and each candidate only swaps model A's decoder layers for its hop list (PathModel).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ...merge.dataflow import PathModel
from ...merge.recipe import MergeRecipe
from ...merge.resident import ResidentMerger
from ...models.uris import local_path
from ...spec.merge_search import MODEL_A, MergeSearchSpec, Objective, path_models
from ..cache import ScoreCache, evaluation_context, score_key
from ..items import ItemScores
from ..memory_plan import GiB, ModelSize, plan_memory
from ..quiet import quiet_libraries
from ..tasks import TaskSuite


log = logging.getLogger(__name__)


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


@dataclass
class EngineTimings:
    """Where a resident engine's time went, summed over candidates (read by benchmarks/evaluate.py)."""

    candidates: int = 0
    cache_hits: int = 0
    merge_s: float = 0.0
    score_s: float = 0.0


def quiet_hflm_class() -> type:
    """lm-eval's HFLM with its per-call progress bars off (a search calls it for every candidate)."""
    from lm_eval.models.huggingface import HFLM

    class QuietHFLM(HFLM):
        def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
            return super().loglikelihood(requests, disable_tqdm=True)

        def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
            return super().loglikelihood_rolling(requests, disable_tqdm=True)

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            return super().generate_until(requests, disable_tqdm=True)

        def _loglikelihood_tokens(self, requests: list[Any], disable_tqdm: bool = False,
                                  override_bs: int | None = None) -> list[tuple[float, bool]]:
            return super()._loglikelihood_tokens(requests, disable_tqdm=True, override_bs=override_bs)

    return QuietHFLM


def load_hflm(model: Any, tokenizer: Any, batch_size: int, device: str) -> Any:
    return quiet_hflm_class()(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)


def merge_device_for(spec: MergeSearchSpec, reference: Path) -> str:
    """cuda while the base, the task vectors and the live model fit this GPU (evaluate/memory_plan.py); else
    the host: the task vectors stay in host memory and each merged tensor is copied to the GPU's model."""
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    plan = plan_memory(spec, ModelSize.of(reference, spec.allow_pickle), accelerator_bytes=total, on_accelerator=True,
                       engine="transformers")
    if plan.merge_on == "host":
        log.info("the experts stay in host memory and merged tensors stream to the GPU: %s do not fit its %.0f GiB",
                 plan.describe("accelerator", "host"), total / GiB)
    return "cuda" if plan.merge_on == "accelerator" else "cpu"


class ResidentEngine:
    """Scores recipes in-process; tasks are built once, weights are overwritten per candidate."""

    def __init__(
        self,
        base_dir: Path | None,
        experts: dict[str, Path],
        objectives: Sequence[Objective],
        include_paths: Sequence[str] = (),
        device: str = "auto",
        batch_size: int = 8,
        allow_pickle: bool = False,
        *,
        seed: int = 0,
        cache: ScoreCache | None = None,
        verbose: bool = False,
        path_models: Mapping[str, Path] | None = None,
        merge_device: str | None = None,
    ):
        """`path_models` (model A first) makes this a data-flow engine: candidates are layer paths over
        those models, run through model A's live object (PathModel) — nothing is merged or materialised.
        `merge_device` holds the experts and runs the merge (default: where the model runs)."""
        from transformers import AutoTokenizer

        if not verbose:
            quiet_libraries()
        self.device = pick_device(device)
        self.merger: ResidentMerger | None = None
        self.paths: PathModel | None = None
        if path_models:
            reference = next(iter(path_models.values()))
        else:
            reference = base_dir if base_dir is not None else next(iter(experts.values()))
        self.model = self._load(reference)
        tokenizer = AutoTokenizer.from_pretrained(reference, trust_remote_code=False)
        if path_models:
            name_a, *others = path_models
            self.paths = PathModel(self.model, name_a, {name: self._load(path_models[name]) for name in others})
        else:
            self.merger = ResidentMerger.from_dirs(base_dir, experts, allow_pickle, merge_device or self.device)
            self.target = self.model.state_dict()  # its tensors alias the live parameters
        self.lm = load_hflm(self.model, tokenizer, batch_size, self.device)
        self.suite = TaskSuite.build(objectives, include_paths, seed)
        self.cache = cache
        models = [d for d in (base_dir, *experts.values(), *(path_models or {}).values()) if d is not None]
        self.context = evaluation_context(objectives, seed, "transformers", list(dict.fromkeys(models)), include_paths)
        self.timings = EngineTimings()

    def _load(self, model_dir: Path) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=False).to(self.device).eval()

    @classmethod
    def from_spec(cls, spec: MergeSearchSpec, objectives: Sequence[Objective], base_dir: Path | None,
                  expert_dirs: dict[str, Path], cache: ScoreCache | None = None,
                  model_a_dir: Path | None = None) -> "ResidentEngine":
        """The engine a search spec asks for; the subsample is drawn from spec.search.seed.

        A data-flow spec gets a path engine over model A (`model_a_dir`, else read from
        spec.merge.dataFlow.modelA) and the experts.
        """
        evaluation = spec.evaluation
        path_dirs = None
        if spec.merge.data_flow.enabled:
            model_a = spec.merge.data_flow.model_a
            dirs = dict(expert_dirs)
            if model_a is not None:
                dirs[MODEL_A] = model_a_dir if model_a_dir is not None else local_path(model_a.uri)
            path_dirs = {name: dirs[name] for name, _ in path_models(spec)}
        merge_device = None
        if path_dirs is None and pick_device(evaluation.device) == "cuda":
            merge_device = merge_device_for(spec, base_dir if base_dir is not None else next(iter(expert_dirs.values())))
        return cls(base_dir, expert_dirs, objectives, evaluation.include_paths, evaluation.device,
                   evaluation.batch_size, spec.allow_pickle, seed=spec.search.seed, cache=cache, path_models=path_dirs,
                   merge_device=merge_device)

    def score(self, recipe: MergeRecipe) -> dict[str, float]:
        """The objectives' metrics for `recipe`: from the cache when scored before, else merged and scored."""
        self.timings.candidates += 1
        digest = recipe.digest()
        key = score_key(digest, self.context)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                self.timings.cache_hits += 1
                return cached
        started = time.perf_counter()
        self._install(recipe)
        merged = time.perf_counter()
        scores = self.suite.run(self.lm)
        self.timings.merge_s += merged - started
        self.timings.score_s += time.perf_counter() - merged
        if self.cache is not None:
            self.cache.put(key, scores, digest, self.context)
        return scores

    def score_items(self, recipe: MergeRecipe) -> tuple[dict[str, float], ItemScores]:
        """The objectives' metrics and per-item results for `recipe` (never cached: the cache keeps aggregates)."""
        self._install(recipe)
        return self.suite.run_items(self.lm)

    def _install(self, recipe: MergeRecipe) -> None:
        """Put the candidate into the live model: its layer path, or its merged weights."""
        if self.paths is not None:
            if recipe.layer_path is None:
                raise ValueError("recipe has no layerPath, but this engine runs a data-flow search's layer paths")
            self.paths.set_path(recipe.layer_path)
            return
        if recipe.layer_path is not None:
            raise ValueError(
                "recipe has a layerPath, but this engine merges parameters only — build it from a spec with "
                "merge.dataFlow.enabled (or export the path and evaluate the checkpoint)"
            )
        assert self.merger is not None
        self.merger.merge_into(recipe, self.target)
