"""vLLM through its OpenAI-compatible API (`/v1/completions`), with plain `requests`.

Prompts go as token ids, so lm-eval's context/continuation split reaches the model unchanged. Scores
come from vLLM's `prompt_logprobs` (each prompt token's log-probability and rank, keyed by token id);
`logprobs: echo` uses the OpenAI-style `echo` + `logprobs` instead, for servers without prompt_logprobs.
"""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import requests

from . import register
from .options import EngineOptions
from .server import GenerateRequest, ScoreRequest
from .http_backend import JsonHttpBackend
from .transport import ServerError, call_with_retries, describe, status_of

DEFAULT_MAX_MODEL_LEN = 2048


@register("vllm")
class VLLMBackend(JsonHttpBackend):
    def __init__(self, options: EngineOptions, tokenizer: Any, sleep: Callable[[float], None] = time.sleep):
        super().__init__(options, tokenizer, sleep)
        self.mode = options.logprobs
        served = call_with_retries(lambda: self._request("GET", "/v1/models"), self.retry, f"GET {self.url}/v1/models", sleep)
        entries = {m["id"]: m for m in served.get("data", [])}
        if not entries:
            raise ServerError(f"{self.url}/v1/models lists no model — is this a vLLM server?")
        self.model = options.adapter or options.served_model or next(iter(entries))
        if self.model not in entries:
            if options.adapter:
                raise ServerError(f"engine_options.adapter: {self.model!r} is not served at {self.url}; it serves "
                                  f"{', '.join(entries)} — start vLLM with --enable-lora --lora-modules {self.model}=DIR")
            raise ServerError(f"engine_options.served_model: {self.model!r} is not served at {self.url}; "
                              f"it serves {', '.join(entries)}")
        # The scored sequence plus the one token vLLM must generate has to fit the model's context; a LoRA
        # entry lists no max_model_len of its own, its parent (the base) does.
        entry = entries[self.model]
        parent = entries.get(entry.get("parent") or "", {})
        self._max_length = int(entry.get("max_model_len") or parent.get("max_model_len") or DEFAULT_MAX_MODEL_LEN) - 2
        # vLLM's CPU build crashes its engine when two prompt_logprobs / echo requests run at once on a server
        # that hosts LoRA adapters (vLLM issues #16668, #29955): there, requests go one at a time.
        hosts_lora = any(e.get("parent") for e in entries.values())
        self.one_at_a_time = threading.Lock() if hosts_lora and options.device == "cpu" else None

    @property
    def max_length(self) -> int:
        return self._max_length

    def score(self, request: ScoreRequest) -> tuple[float, bool]:
        ids = list(request.ids)
        body: dict[str, Any] = {"model": self.model, "prompt": ids, "max_tokens": 1, "temperature": 0.0}
        if self.mode == "prompt_logprobs":
            body["prompt_logprobs"] = 1
        else:
            body.update(echo=True, logprobs=1)
        choice = self._complete(body)
        scored = range(len(ids) - request.n_scored, len(ids))
        if self.mode == "prompt_logprobs":
            return self._from_prompt_logprobs(choice, ids, scored)
        return self._from_echo(choice, ids, scored)

    def generate(self, request: GenerateRequest) -> str:
        """The continuation decoded here from the generated token ids, as lm-eval's HFLM decodes its own: vLLM's
        incremental detokenizer spaces the tokens of a word-level tokenizer differently (" blue " for "blue")."""
        body = {
            "model": self.model, "prompt": list(request.context_ids), "max_tokens": request.max_new_tokens,
            "temperature": request.temperature, "stop": list(request.until), "return_token_ids": True,
        }
        choice = self._complete(body)
        ids = choice.get("token_ids")
        return str(choice["text"]) if ids is None else str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def swap_weights(self, weights_dir: Path) -> None:
        """Serve the checkpoint in `weights_dir` from now on, without a restart: the server rereads it in place.

        It must have the served model's architecture and shapes. The prefix cache is reset afterwards:
        otherwise a prompt that fills a cache block reuses KV blocks the previous weights computed.
        Both routes exist only on a server started with VLLM_SERVER_DEV_MODE=1.
        """
        self._control("/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": str(weights_dir)}})
        self._control("/reset_prefix_cache")

    # ---- responses --------------------------------------------------------------------------------------------
    def _from_prompt_logprobs(self, choice: dict[str, Any], ids: list[int], scored: range) -> tuple[float, bool]:
        entries = choice.get("prompt_logprobs")
        if not entries or len(entries) != len(ids):
            raise ServerError(
                f"{self.url}/v1/completions returned {len(entries or [])} prompt_logprobs for {len(ids)} prompt tokens — "
                "the server does not support prompt_logprobs; set engine_options.logprobs: echo"
            )
        total, greedy = 0.0, True
        for position in scored:
            entry = entries[position] or {}
            info = entry.get(str(ids[position]))
            if info is None:
                raise ServerError(f"{self.url}: prompt_logprobs at position {position} lack the prompt token {ids[position]}")
            total += float(info["logprob"])
            greedy = greedy and info.get("rank") == 1
        return total, greedy

    def _from_echo(self, choice: dict[str, Any], ids: list[int], scored: range) -> tuple[float, bool]:
        logprobs = choice.get("logprobs") or {}
        values, tokens, tops = (logprobs.get(k) or [] for k in ("token_logprobs", "tokens", "top_logprobs"))
        if min(len(values), len(tokens), len(tops)) < len(ids):
            raise ServerError(f"{self.url}/v1/completions echoed {len(values)} prompt log-probabilities for "
                              f"{len(ids)} prompt tokens — the server does not support echo with logprobs")
        total, greedy = 0.0, True
        for position in scored:
            total += float(values[position])
            top = tops[position] or {}
            greedy = greedy and bool(top) and max(top, key=top.get) == tokens[position]
        return total, greedy

    # ---- HTTP -----------------------------------------------------------------------------------------------
    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        what = f"POST {self.url}/v1/completions"
        try:
            with self.one_at_a_time or nullcontext():
                answer = call_with_retries(lambda: self._request("POST", "/v1/completions", body), self.retry, what,
                                           self.sleep)
        except ServerError:
            raise
        except requests.HTTPError as error:
            raise ServerError(f"{what} rejected the request — {describe(error)}") from error
        choices = answer.get("choices") or []
        if not choices:
            raise ServerError(f"{what} answered without choices: {str(answer)[:200]}")
        return choices[0]

    def _control(self, path: str, body: dict[str, Any] | None = None) -> None:
        what = f"POST {self.url}{path}"
        try:
            call_with_retries(lambda: self._request("POST", path, body, want_json=False), self.retry, what, self.sleep)
        except requests.HTTPError as error:
            if status_of(error) == 404:
                raise ServerError(f"{what} is not served — start vLLM with VLLM_SERVER_DEV_MODE=1 so that it can take "
                                  "new weights in place") from error
            raise ServerError(f"{what} failed — {describe(error)}") from error
