"""lm-eval models over an inference server: evomerge tokenises, the server only computes.

`ServerLM` is an lm-eval `TemplateLM`, so every task type works (loglikelihood, multiple choice,
generate_until, loglikelihood_rolling). It splits context and continuation with the served model's own
tokenizer exactly as lm-eval's HFLM does, so a server-scored candidate and a resident-scored one see
the same tokens; the backend (TGI, vLLM) only turns token sequences into log-probabilities or text.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, TypeVar

from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import handle_stop_sequences, has_bos_prefix, normalize_gen_kwargs, postprocess_generated_text
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_MAX_GEN_TOKS = 256


@dataclass(frozen=True)
class ScoreRequest:
    """Score the last `n_scored` of `ids`; the tokens before them are context only.

    `text_hints` / `context_hints` are strings expected to tokenise to `ids` / `ids[:-n_scored]`, for
    servers that take text rather than token ids (they are verified, never trusted).
    """

    ids: tuple[int, ...]
    n_scored: int
    want_greedy: bool
    text_hints: tuple[str, ...] = ()
    context_hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerateRequest:
    context: str
    context_ids: tuple[int, ...]
    until: tuple[str, ...]
    max_new_tokens: int
    temperature: float  # 0 means greedy


class ServerBackend(Protocol):
    """One inference server protocol: log-probabilities of given tokens, and generation."""

    name: str

    @property
    def max_length(self) -> int:
        """Longest token sequence one scoring request may carry."""
        ...

    def score(self, request: ScoreRequest) -> tuple[float, bool]:
        """Sum of log-probabilities of the scored tokens, and whether greedy decoding would produce them."""
        ...

    def generate(self, request: GenerateRequest) -> str:
        """The generated continuation (stop sequences are cut by the caller)."""
        ...

    def close(self) -> None: ...


class ServerLM(TemplateLM):
    """lm-eval model whose forward passes run on a server; `concurrency` requests are in flight at once."""

    def __init__(self, backend: ServerBackend, tokenizer: Any, concurrency: int = 8,
                 greedy_tasks: frozenset[str] | None = None):
        super().__init__()
        self.backend = backend
        self.tokenizer = tokenizer
        self.greedy_tasks = greedy_tasks  # None: every loglikelihood request reports is_greedy
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"evomerge-{backend.name}")
        self._greedy_flags: list[bool] | None = None

    # ---- tokenisation: identical to lm-eval's HFLM, so both engines score the same tokens ----------------
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self.backend.max_length

    @property
    def max_gen_toks(self) -> int:
        return DEFAULT_MAX_GEN_TOKS

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        special = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            special = {"add_special_tokens": False}
        return self.tokenizer.encode(string, **special)

    # ---- lm-eval request types ----------------------------------------------------------------------------
    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        self._greedy_flags = [self.greedy_tasks is None or r.task_name in self.greedy_tasks for r in requests]
        try:
            return super().loglikelihood(requests, disable_tqdm=True)
        finally:
            self._greedy_flags = None

    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str], list[int], list[int]]],
                              **kwargs: Any) -> list[tuple[float, bool]]:
        flags = self._greedy_flags or [True] * len(requests)
        jobs = []
        for ((context, continuation), context_enc, continuation_enc), greedy in zip(requests, flags, strict=True):
            ids = tuple((context_enc + continuation_enc)[-(self.max_length + 1):])
            prefix_text = self.tokenizer.decode([self.prefix_token_id])
            stripped = context.rstrip()
            jobs.append(ScoreRequest(
                ids, min(len(continuation_enc), len(ids) - 1), greedy,
                text_hints=(context + continuation,) if context else (prefix_text + continuation,),
                context_hints=(stripped,) if stripped else (prefix_text,),
            ))
        return self._map(self.backend.score, jobs)

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        jobs: list[ScoreRequest] = []
        owners: list[int] = []
        prefix_text = self.tokenizer.decode([self.prefix_token_id])
        for index, (string,) in enumerate(r.args for r in requests):
            windows = get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length, context_len=1,
            )
            for context, predicted in map(make_disjoint_window, windows):
                jobs.append(ScoreRequest(tuple(context + predicted), len(predicted), False,
                                         text_hints=(string, prefix_text + string)))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, (logprob, _greedy) in zip(owners, self._map(self.backend.score, jobs), strict=True):
            totals[owner] += logprob
        return totals

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        eos = self.tokenizer.decode([self.eot_token_id], skip_special_tokens=False)
        jobs = []
        for context, gen_kwargs in (r.args for r in requests):
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_new = int(kwargs.pop("max_gen_toks"))
            if max_new >= self.max_length:
                raise ValueError(
                    f"generate_until asks for {max_new} new tokens but the server scores at most {self.max_length} "
                    "tokens per request — lower max_gen_toks in the task, or serve with a longer context"
                )
            temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0
            context_ids = tuple(self.tok_encode(context)[-(self.max_length - max_new):])
            jobs.append(GenerateRequest(context, context_ids, tuple(until), max_new, temperature))
        texts = self._map(self.backend.generate, jobs)
        return [postprocess_generated_text(text, list(job.until), None) for text, job in zip(texts, jobs, strict=True)]

    # ---- plumbing -----------------------------------------------------------------------------------------
    def _map(self, call: Callable[[T], R], jobs: Sequence[T]) -> list[R]:
        return list(self._pool.map(call, jobs))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.backend.close()
