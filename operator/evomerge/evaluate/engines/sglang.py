"""SGLang through its native API (`/generate`), with plain `requests`.

Prompts go as token ids (`input_ids`), so lm-eval's context/continuation split reaches the model unchanged.
Scores come from `return_logprob` with `logprob_start_len` at the first scored token: `meta_info.
input_token_logprobs` lists [logprob, token id, text] from that position on, and `input_top_logprobs` (with
`top_logprobs_num: 1`) the most likely token at each, which says whether greedy decoding would produce the
continuation. A new checkpoint of the same shapes is taken in place by `POST /update_weights_from_disk`,
which also flushes the radix cache.

Written against SGLang 0.5's documented HTTP server (python/sglang/srt/entrypoints/http_server.py); SGLang
has no CPU build on PyPI, so the test suite checks this client against a look-alike (tests/support/
fake_servers.FakeSGLang), not the real server.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import requests

from . import register
from .options import EngineOptions
from .server import GenerateRequest, ScoreRequest
from .http_backend import JsonHttpBackend
from .transport import ServerError, call_with_retries, describe

DEFAULT_CONTEXT = 2048


@register("sglang")
class SGLangBackend(JsonHttpBackend):
    def __init__(self, options: EngineOptions, tokenizer: Any, sleep: Callable[[float], None] = time.sleep):
        super().__init__(options, tokenizer, sleep)
        info = call_with_retries(lambda: self._request("GET", "/get_server_info"), self.retry,
                                 f"GET {self.url}/get_server_info", sleep)
        # The longest input the scheduler admits; one position is left for the token a request generates.
        self._max_length = int(info.get("max_req_input_len") or info.get("context_length") or DEFAULT_CONTEXT) - 1

    @property
    def max_length(self) -> int:
        return self._max_length

    def score(self, request: ScoreRequest) -> tuple[float, bool]:
        ids = list(request.ids)
        start = len(ids) - request.n_scored
        body = {"input_ids": ids, "sampling_params": {"max_new_tokens": 0, "temperature": 0.0},
                "return_logprob": True, "logprob_start_len": start, "top_logprobs_num": 1 if request.want_greedy else 0}
        meta = self._generate(body).get("meta_info") or {}
        values = meta.get("input_token_logprobs") or []
        if len(values) != len(ids) - start:
            raise ServerError(f"{self.url}/generate returned {len(values)} input_token_logprobs for the {len(ids) - start} "
                              "tokens from logprob_start_len — is this an SGLang server?")
        total, greedy = 0.0, True
        tops = meta.get("input_top_logprobs") or [None] * len(values)
        for offset, (entry, top) in enumerate(zip(values, tops)):
            logprob, token = entry[0], entry[1]
            if logprob is None or token != ids[start + offset]:
                raise ServerError(f"{self.url}/generate: no log-probability for prompt token {ids[start + offset]} "
                                  f"at position {start + offset}")
            total += float(logprob)
            if request.want_greedy:
                greedy = greedy and bool(top) and top[0][1] == token
        return total, greedy

    def generate(self, request: GenerateRequest) -> str:
        body = {"input_ids": list(request.context_ids),
                "sampling_params": {"max_new_tokens": request.max_new_tokens, "temperature": request.temperature,
                                    "stop": list(request.until)}}
        return str(self._generate(body).get("text", ""))

    def swap_weights(self, weights_dir: Path) -> None:
        """Serve the checkpoint in `weights_dir` from now on (same architecture and shapes), without a restart."""
        what = f"POST {self.url}/update_weights_from_disk"
        body = {"model_path": str(weights_dir), "flush_cache": True}
        try:
            answer = call_with_retries(lambda: self._request("POST", "/update_weights_from_disk", body), self.retry,
                                       what, self.sleep)
        except requests.HTTPError as error:
            raise ServerError(f"{what} failed — {describe(error)}") from error
        if not answer.get("success", False):
            raise ServerError(f"{what} failed — {answer.get('message')}")

    def _generate(self, body: dict[str, Any]) -> dict[str, Any]:
        what = f"POST {self.url}/generate"
        try:
            answer = call_with_retries(lambda: self._request("POST", "/generate", body), self.retry, what, self.sleep)
        except ServerError:
            raise
        except requests.HTTPError as error:
            raise ServerError(f"{what} rejected the request — {describe(error)}") from error
        if not isinstance(answer, dict):
            raise ServerError(f"{what} answered {str(answer)[:200]}, not one result")
        return answer
