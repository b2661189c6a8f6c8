"""The resident transformers engine: one model object, re-merged in place for every candidate."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from ...merge.recipe import MergeRecipe
from ...merge.resident import ResidentMerger
from ...models.checkpoint import open_checkpoint
from ...spec.merge_search import Objective
from ..tasks import build_task_dict, read_metric


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


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
    ):
        from lm_eval.models.huggingface import HFLM
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = pick_device(device)
        self.objectives = list(objectives)
        reference = base_dir if base_dir is not None else next(iter(experts.values()))
        base = open_checkpoint(base_dir, allow_pickle) if base_dir is not None else None
        ckpts = {name: open_checkpoint(path, allow_pickle) for name, path in experts.items()}
        self.model = AutoModelForCausalLM.from_pretrained(reference, trust_remote_code=False).to(self.device).eval()
        tokenizer = AutoTokenizer.from_pretrained(reference, trust_remote_code=False)
        self.merger = ResidentMerger(base, ckpts, self.model.config.num_hidden_layers, self.device)
        self.target = self.model.state_dict()
        self.lm = HFLM(pretrained=self.model, tokenizer=tokenizer, batch_size=batch_size, device=self.device)
        self.task_dict = build_task_dict(self.objectives, include_paths)

    def score(self, recipe: MergeRecipe) -> dict[str, float]:
        from lm_eval.evaluator import evaluate

        self.merger.merge_into(recipe, self.target)
        limit = max((o.limit for o in self.objectives if o.limit), default=None)
        logging.getLogger("lm-eval").setLevel(logging.WARNING)
        results = evaluate(
            lm=self.lm, task_dict=self.task_dict, limit=limit, bootstrap_iters=0, log_samples=False, verbosity="ERROR"
        )
        return {o.key: read_metric(results, o) for o in self.objectives}
