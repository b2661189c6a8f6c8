"""TGI (text-generation-inference) through huggingface_hub's InferenceClient.

Log-likelihoods come from `/generate` with `decoder_input_details`: the prefill tokens carry each
prompt token's log-probability. TGI computes them only when started with --enable-prefill-logprobs
(off by default since TGI 3), and TGI takes text, not token ids — so every request's text is checked
to tokenise to exactly the tokens lm-eval split, and the server's prefill ids are checked again.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from . import register
from .http_backend import HttpBackend
from .options import EngineOptions
from .server import GenerateRequest, ScoreRequest
from .transport import (
    NotReadyYet,
    PrefillLogprobsUnavailable,
    ServerError,
    TokenizationMismatch,
    call_with_retries,
    describe,
    status_of,
)

PREFILL_HINT = (
    "start TGI with --enable-prefill-logprobs (or env ENABLE_PREFILL_LOGPROBS=true): loglikelihood, "
    "multiple-choice and perplexity tasks need the prompt's log-probabilities"
)


@register("tgi")
class TGIBackend(HttpBackend):
    def __init__(self, options: EngineOptions, tokenizer: Any, sleep: Callable[[float], None] = time.sleep):
        super().__init__(options, tokenizer, sleep)
        info = call_with_retries(lambda: self.client.get_endpoint_info(model=self.url), self.retry,
                                 f"GET {self.url}/info", sleep)
        max_input = int(info.get("max_input_tokens") or info.get("max_input_length") or 0)
        max_total = int(info.get("max_total_tokens") or 0)
        if max_input < 2 or max_total < 3:
            raise ServerError(f"{self.url}/info reports max_input_tokens={max_input}, max_total_tokens={max_total} — "
                              "is this a TGI server?")
        self._max_length = min(max_input - 1, max_total - 2)
        self.max_stop_sequences = int(info.get("max_stop_sequences", 4))
        self.model_id = str(info.get("model_id", ""))
        # TGI answers an adapter_id it has not loaded with the base model, silently: the pod that starts it
        # must load the adapter under this name (LORA_ADAPTERS=NAME=DIR).
        self.adapter = {"adapter_id": options.adapter} if options.adapter else {}
        self._added_prefix = list(tokenizer("", add_special_tokens=True)["input_ids"])

    @property
    def max_length(self) -> int:
        return self._max_length

    def score(self, request: ScoreRequest) -> tuple[float, bool]:
        text = self._text_for(request.ids, request.text_hints)
        output = self._generate(text, max_new_tokens=1, details=True, decoder_input_details=True)
        prefill = list(output.details.prefill) if output.details is not None else []
        if len(prefill) < 2 or all(token.logprob is None for token in prefill[1:]):
            raise PrefillLogprobsUnavailable(
                f"{self.url}/generate returned no prompt log-probabilities (prefill has {len(prefill)} tokens) — "
                + PREFILL_HINT
            )
        served = [token.id for token in prefill]
        if served != list(request.ids):
            raise TokenizationMismatch(
                f"{self.url} tokenised a request as {served[:12]}… but the engine's tokenizer gives "
                f"{list(request.ids[:12])}… — point the engine at the served model's tokenizer"
            )
        logprob = sum(float(token.logprob) for token in prefill[-request.n_scored:])
        return logprob, self._is_greedy(request) if request.want_greedy else False

    def generate(self, request: GenerateRequest) -> str:
        text = self._text_for(request.context_ids, (request.context,))
        sampling = {"do_sample": True, "temperature": request.temperature} if request.temperature > 0 else {}
        output = self._generate(
            text, max_new_tokens=request.max_new_tokens, stop=list(request.until[: self.max_stop_sequences]),
            details=False, **sampling,
        )
        return str(output)

    def close(self) -> None:
        self.client.close()

    def _connect(self, options: EngineOptions) -> None:
        from huggingface_hub import InferenceClient

        # On /generate, an explicit None drops the Authorization header the hub client would otherwise fill
        # from the user's Hugging Face login (a Hub token, not the server's); /health and /info go through
        # the client's own helpers, which still attach a stored login when no api_key is given.
        auth = f"Bearer {options.api_key}" if options.api_key else None
        self.client = InferenceClient(provider="hf-inference", timeout=options.timeout_s, headers={"authorization": auth})

    # ---- internals ------------------------------------------------------------------------------------------
    def _is_greedy(self, request: ScoreRequest) -> bool:
        """Greedy decoding from the context reproduces the continuation iff each token was the argmax."""
        n = request.n_scored
        context = self._text_for(request.ids[:-n], request.context_hints)
        output = self._generate(context, max_new_tokens=n, details=True)
        generated = [token.id for token in output.details.tokens] if output.details is not None else []
        return generated == list(request.ids[-n:])

    def _generate(self, text: str, **parameters: Any) -> Any:
        route = f"{self.url}/generate"

        def once() -> Any:
            return self.client.text_generation(text, model=route, **self.adapter, **parameters)

        try:
            return call_with_retries(once, self.retry, f"POST {route}", self.sleep)
        except ServerError:
            raise
        except Exception as error:  # a request the server will not accept: find out why, then explain
            status = status_of(error)
            refused = status is not None and 400 <= status < 500
            if refused and parameters.get("decoder_input_details") and self._accepts_without_prefill(text):
                raise PrefillLogprobsUnavailable(f"{route} refused decoder_input_details ({describe(error)}) — "
                                                 + PREFILL_HINT) from error
            raise ServerError(f"{route} rejected the request — {describe(error)}") from error

    def _accepts_without_prefill(self, text: str) -> bool:
        try:
            self.client.text_generation(text, model=f"{self.url}/generate", max_new_tokens=1, **self.adapter)
        except Exception:  # the server rejects this input outright: not a prefill problem
            return False
        return True

    def _probe(self) -> None:
        if not self.client.health_check(model=self.url):
            raise NotReadyYet(f"GET {self.url}/health did not answer 200 (still loading, or unhealthy)")

    def _text_for(self, ids: tuple[int, ...], hints: tuple[str, ...]) -> str:
        """A string TGI will tokenise to exactly `ids`: a hint if one fits, else the decoded ids."""
        for text in (*hints, self._decoded(ids)):
            if text and self._served_ids(text) == list(ids):
                return text
        shown = self.tokenizer.convert_ids_to_tokens(list(ids[:12]))
        raise TokenizationMismatch(
            f"TGI takes text, and no text tokenises back to this request's {len(ids)} tokens ({shown}…) — "
            "score this task with engine vllm, which takes token ids"
        )

    def _served_ids(self, text: str) -> list[int]:
        """How TGI tokenises `text`: the served tokenizer with its special tokens (add_special_tokens=true)."""
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def _decoded(self, ids: tuple[int, ...]) -> str:
        body = list(ids)
        if self._added_prefix and body[: len(self._added_prefix)] == self._added_prefix:
            body = body[len(self._added_prefix):]
        return self.tokenizer.decode(body, skip_special_tokens=False)

