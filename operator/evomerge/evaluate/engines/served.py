"""One vLLM server per evaluation worker: candidates are merged here and swapped into the running server.

`VLLMWorker` holds the experts resident (ResidentMerger), the live merge as CPU tensors, and one vLLM server
it starts once. Per candidate it merges, writes the weights to a folder on tmpfs (/dev/shm: memory, no
disk), has the server reread them in place (`VLLMBackend.swap_weights`) and scores through the server.
A server that dies mid-candidate costs only that candidate's attempt: the worker starts a new server and
scores the candidate again. `ServedEngine` is the worker seen through one set of objectives (the search's,
the held-out ones), so a run's search and its held-out scoring share one server.

Data-flow candidates change the layer count, which a reload of the same shapes cannot take; they are
scored in-process (`ResidentEngine`), which `runner.local.make_engine` chooses for them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import requests
from safetensors.torch import save_file

from ...merge.inputs import open_source
from ...merge.recipe import MergeRecipe
from ...merge.resident import ResidentMerger
from ...models.checkpoint import open_checkpoint
from ...spec.merge_search import Objective
from ..cache import ScoreCache, evaluation_context, score_key
from ..quiet import quiet_libraries
from ..items import ItemScores
from ..tasks import TaskSuite
from . import make_server_lm
from .options import EngineOptions
from .server import ServerLM
from .vllm_process import VLLMServerProcess

log = logging.getLogger(__name__)
WEIGHTS_FILE = "model.safetensors"
MAX_MODEL_LEN = 4096  # at most: the model's max_position_embeddings caps it; scoring prompts are short
TMPFS = Path("/dev/shm")

T = TypeVar("T")
StartServer = Callable[[Path, Path, int, str], VLLMServerProcess]  # (model dir, log file, max model len, dtype) -> healthy


@dataclass
class WorkerTimings:
    """Where the worker's time went, summed over the candidates it scored (read by benchmarks/served_eval.py)."""

    server_starts: int = 0
    start_s: float = 0.0
    candidates: int = 0
    cache_hits: int = 0
    retried: int = 0
    merge_s: float = 0.0
    handover_s: float = 0.0
    score_s: float = 0.0


@dataclass
class VLLMWorker:
    """The experts, the live merge and one vLLM server; see the module docstring. Close it (or use `with`)."""

    base_dir: Path | None
    expert_dirs: dict[str, Path]
    log_dir: Path
    allow_pickle: bool = False
    start_server: StartServer | None = None
    timings: WorkerTimings = field(default_factory=WorkerTimings)

    def __post_init__(self) -> None:
        base = open_checkpoint(self.base_dir, self.allow_pickle) if self.base_dir is not None else None
        experts = {name: open_source(path, base, self.allow_pickle) for name, path in self.expert_dirs.items()}
        reference = base if base is not None else next(iter(experts.values()))
        self.served_dir = self.base_dir if self.base_dir is not None else next(iter(self.expert_dirs.values()))
        config = reference.config()
        self.merger = ResidentMerger(base, experts, int(config.get("num_hidden_layers", 1)), "cpu")
        # The live merge: every tensor of the served checkpoint, under its checkpoint name and dtype.
        self.target = {name: reference.read(name, "cpu").clone() for name in reference.names}
        self.max_model_len = min(int(config.get("max_position_embeddings") or MAX_MODEL_LEN), MAX_MODEL_LEN)
        # The checkpoint's own dtype, as the in-process engine loads it: vLLM's "auto" would run a float32
        # checkpoint in 16 bits, and its scores would no longer be the in-process engine's.
        floats = [t.dtype for t in self.target.values() if t.is_floating_point()]
        self.dtype = str(floats[0]).removeprefix("torch.") if floats else "auto"
        root = TMPFS if TMPFS.is_dir() else None
        self.scratch = Path(tempfile.mkdtemp(prefix="evomerge-weights-", dir=root))
        self.server: VLLMServerProcess | None = None
        self.lm: ServerLM | None = None
        self.tokenizer: Any = None

    def engine(self, objectives: Sequence[Objective], include_paths: Sequence[str] = (), *, seed: int = 0,
               cache: ScoreCache | None = None) -> "ServedEngine":
        models = [d for d in (self.base_dir, *self.expert_dirs.values()) if d is not None]
        context = evaluation_context(objectives, seed, "vllm", list(dict.fromkeys(models)), include_paths)
        return ServedEngine(self, TaskSuite.build(objectives, include_paths, seed), context, cache)

    def score(self, recipe: MergeRecipe, suite: TaskSuite, run: Callable[[TaskSuite, ServerLM], T] = TaskSuite.run) -> T:
        """Merge, hand over and score one candidate (`run`: the suite's aggregates, or with `TaskSuite.run_items` its
        per-item results too); on a dead server, restart it and try the candidate once more."""
        started = time.perf_counter()
        self.merger.merge_into(recipe, self.target)
        self.timings.merge_s += time.perf_counter() - started
        try:
            return self._swap_and_score(suite, run)
        except Exception as error:
            if self.server is None or self._server_healthy():  # it never started, or it is fine: not a server death
                raise
            log.warning("the vLLM server died while scoring a candidate (%s); starting a new one and scoring the "
                        "candidate again", error)
            self.timings.retried += 1
            self.stop_server()
            return self._swap_and_score(suite, run)

    def _swap_and_score(self, suite: TaskSuite, run: Callable[[TaskSuite, ServerLM], T]) -> T:
        lm = self._ensure_server()
        lm.greedy_tasks = suite.greedy_tasks
        started = time.perf_counter()
        save_file(self.target, str(self.scratch / WEIGHTS_FILE))
        lm.backend.swap_weights(self.scratch)  # type: ignore[attr-defined]
        handed = time.perf_counter()
        scores = run(suite, lm)
        self.timings.handover_s += handed - started
        self.timings.score_s += time.perf_counter() - handed
        return scores

    def _ensure_server(self) -> ServerLM:
        if self.lm is not None:
            return self.lm
        from transformers import AutoTokenizer

        assert self.served_dir is not None
        started = time.perf_counter()
        log_file = self.log_dir / f"vllm-{self.timings.server_starts}.log"
        start = self.start_server or _start_default
        self.server = start(self.served_dir, log_file, self.max_model_len, self.dtype)
        self.timings.server_starts += 1
        self.timings.start_s += time.perf_counter() - started
        if self.tokenizer is None:
            self.tokenizer = AutoTokenizer.from_pretrained(self.served_dir, trust_remote_code=False)
        self.lm = make_server_lm(EngineOptions(engine="vllm", url=self.server.url), self.tokenizer)
        return self.lm

    def _server_healthy(self) -> bool:
        if self.server is None or not self.server.alive:
            return False
        try:
            return requests.get(self.server.url + "/health", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    def stop_server(self) -> None:
        """Stop the server; the next candidate starts a new one."""
        if self.lm is not None:
            self.lm.close()
            self.lm = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def close(self) -> None:
        """Stop the server and remove the weights folder; idempotent."""
        self.stop_server()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> "VLLMWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _start_default(model_dir: Path, log_file: Path, max_model_len: int, dtype: str) -> VLLMServerProcess:
    return VLLMServerProcess.start(model_dir, log_file, max_model_len=max_model_len, dtype=dtype)


@dataclass
class ServedEngine:
    """A `VLLMWorker` scoring one set of objectives; the same `score(recipe)` as ResidentEngine."""

    worker: VLLMWorker
    suite: TaskSuite
    context: str
    cache: ScoreCache | None = None

    def __post_init__(self) -> None:
        quiet_libraries()

    @property
    def timings(self) -> WorkerTimings:
        return self.worker.timings

    def score(self, recipe: MergeRecipe) -> dict[str, float]:
        """The objectives' metrics for `recipe`: from the cache when scored before, else merged, swapped in and scored."""
        self.worker.timings.candidates += 1
        digest = recipe.digest()
        key = score_key(digest, self.context)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                self.worker.timings.cache_hits += 1
                return cached
        self._check(recipe)
        scores = self.worker.score(recipe, self.suite)
        if self.cache is not None:
            self.cache.put(key, scores, digest, self.context)
        return scores

    def score_items(self, recipe: MergeRecipe) -> tuple[dict[str, float], ItemScores]:
        """The objectives' metrics and per-item results for `recipe` (never cached: the cache keeps aggregates)."""
        self._check(recipe)
        return self.worker.score(recipe, self.suite, TaskSuite.run_items)

    @staticmethod
    def _check(recipe: MergeRecipe) -> None:
        if recipe.layer_path is not None:
            raise ValueError("recipe has a layerPath: data-flow candidates change the layer count, which an in-place "
                             "reload cannot take — they are scored in-process (engine transformers)")

