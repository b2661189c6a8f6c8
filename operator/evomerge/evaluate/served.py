"""A batch scored through one server that takes each candidate's weights in place: one server start, many candidates.

In an evaluation pod, the `merge` step wrote the batch's first candidate into `model_dir` and the server
started on it. This process holds the experts resident (ResidentMerger, on the host: the accelerator
belongs to the server) and, for every later candidate, merges into a host copy of the weights, writes them
to a fresh folder next to `model_dir` (the pod's memory-backed volume), has the server reload them in place
(the engine's `swap_weights`) and scores through the server; the previous folder is then removed.

A server that dies mid-candidate is restarted by the kubelet (it is a native sidecar): the scorer waits
until it answers again, hands it the candidate's weights once more and scores that candidate again. The
candidates before it keep their scores; only a second failure of the same candidate fails it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from ..merge.recipe import MergeRecipe
from ..spec.merge_search import MergeSearchSpec, Objective
from .engines.options import EngineOptions
from .engines.transport import ServerError

log = logging.getLogger(__name__)
WEIGHTS_FILE = "model.safetensors"
ATTEMPTS_PER_CANDIDATE = 2  # the first try, and one more after the server came back


class ServedBatch:
    """Scores the candidates of one batch, in order, through the server at `options.url` (see the module docstring)."""

    def __init__(self, spec: MergeSearchSpec, objectives: Sequence[Objective], model_dir: Path, options: EngineOptions,
                 make_lm: Callable[[EngineOptions, Any, frozenset[str]], Any] | None = None):
        from transformers import AutoTokenizer

        from .engines import make_server_lm
        from .tasks import TaskSuite

        self.spec, self.options, self.model_dir = spec, options, Path(model_dir)
        self.make_lm = make_lm or make_server_lm
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, trust_remote_code=False)
        self.suite = TaskSuite.build(objectives, spec.evaluation.include_paths, spec.search.seed)
        self.lm = self.make_lm(options, self.tokenizer, self.suite.greedy_tasks)
        self.served = self.model_dir  # the folder the server's weights came from last
        self._merger: Any = None
        self._weights: dict[str, Any] | None = None
        self.swaps = 0

    def score(self, recipe: MergeRecipe, first: bool) -> dict[str, float]:
        """The candidate's scores; `first`: the server already serves it (the merge step wrote it into model_dir)."""
        if not first:
            self._install(recipe)
        for attempt in range(ATTEMPTS_PER_CANDIDATE):
            try:
                return self.suite.run(self.lm)
            except ServerError as error:
                if attempt == ATTEMPTS_PER_CANDIDATE - 1:
                    raise
                self._reconnect(f"while scoring ({error})")
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.lm.close()

    def _reconnect(self, when: str) -> None:
        """A new client once the (restarted) server answers; it serves model_dir again, so swap the candidate back in."""
        log.warning("the server failed %s; waiting for it to come back, then handing it the candidate again", when)
        self.lm.close()
        self.lm = self.make_lm(self.options, self.tokenizer, self.suite.greedy_tasks)
        if self.served != self.model_dir:
            self.lm.backend.swap_weights(self.served)

    def _install(self, recipe: MergeRecipe) -> None:
        """Merge into the host copy, write it to a fresh folder, swap the server onto it, drop the previous folder."""
        from safetensors.torch import save_file

        if recipe.layer_path is not None:
            raise ValueError("a data-flow candidate changes the layer count, which an in-place weight swap cannot take")
        merger, weights = self._resident()
        merger.merge_into(recipe, weights)
        self.swaps += 1
        folder = self.model_dir.parent / f"{self.model_dir.name}-{self.swaps}"
        folder.mkdir(exist_ok=True)
        save_file(weights, str(folder / WEIGHTS_FILE))
        previous, self.served = self.served, folder
        try:
            self.lm.backend.swap_weights(folder)
        except ServerError as error:
            self._reconnect(f"taking the candidate's weights ({error})")
        if previous != self.model_dir:
            shutil.rmtree(previous, ignore_errors=True)

    def _resident(self) -> tuple[Any, dict[str, Any]]:
        """The experts, loaded at the first swap, and a host copy of the served weights to merge into."""
        if self._merger is None:
            from safetensors.torch import load_file

            from ..merge.resident import ResidentMerger

            from .batch import input_dirs

            self._merger = ResidentMerger.from_dirs(*input_dirs(self.spec), self.spec.allow_pickle, "cpu")
            self._weights = {}
            for path in sorted(self.model_dir.glob("*.safetensors")):
                self._weights.update(load_file(str(path)))
        assert self._weights is not None
        return self._merger, self._weights
