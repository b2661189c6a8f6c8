"""TGI, vLLM and SGLang look-alikes on 127.0.0.1, answering their documented routes with a real tiny model's numbers.

The request and response shapes follow the servers' published API documents: TGI's OpenAPI
(`/generate` GenerateRequest → GenerateResponse with Details.prefill [PrefillToken id/text/logprob]
and Details.tokens [Token id/text/logprob/special]; `/health`; `/info` Info; ErrorResponse
{error, error_type}) and vLLM's OpenAI-compatible `/v1/completions` (CompletionRequest with `echo`,
`logprobs`, `prompt_logprobs`; CompletionResponse choices with `logprobs` {tokens, token_logprobs,
top_logprobs, text_offset} and `prompt_logprobs` [null, {token_id: {logprob, rank, decoded_token}}]),
`/health`, `/v1/models`. Every log-probability is computed by the same tiny transformers model the
resident engine uses, so engines are exercised over real HTTP with real numbers.

They stand in only where the real server cannot run or cannot be made to fail on cue. The real vLLM
server runs in the suite (`tests/support/vllm.py`, the CPU build `hack/vllm/install.sh` installs), and
tests that a real server can answer use it. FakeVLLM is for the faults a real server does not show on
demand (`Behaviour`: 503 while loading, a flaky 500, no prompt_logprobs, a context shorter than it said) and
for what a request carries (test_vllm.py counts the model names sent); the parity suites run on the real
server (test_server.py, test_vllm_real.py, test_served.py), LoRA adapters included.
FakeTGI stands in for TGI, which has no CPU build to install and whose project is archived.
Decoding is always greedy.

Started with `adapters` ({name: PEFT adapter directory}), a server hosts LoRA adapters over its base as the
real ones do: vLLM lists each in /v1/models (parent: the base) and serves it by model name; TGI applies the
one a request names in parameters.adapter_id, and like TGI's server (ADAPTER_TO_INDEX.get(id, 0)) answers an
adapter_id it has not loaded with the base model.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


@dataclass
class Behaviour:
    loading_responses: int = 0  # the first N requests (any route) answer 503, as while weights load
    flaky_inference: int = 0  # the next N inference requests answer 500
    prefill: Literal["enabled", "error", "empty"] = "enabled"  # TGI: prompt logprobs on, refused, or silently empty
    prompt_logprobs: bool = True  # vLLM: False behaves like an OpenAI-style server that ignores the field
    max_stop_sequences: int = 4
    max_input_tokens: int = 48
    max_total_tokens: int = 64


@dataclass
class Counters:
    requests: int = 0
    inference: int = 0
    answered_503: int = 0
    answered_500: int = 0
    paths: list[str] = field(default_factory=list)


class TinyModel:
    """The served model: forward passes under a lock (the HTTP server is threaded).

    `adapters` are PEFT LoRA adapters applied over the model, each on its own copy of the base (peft
    injects its layers in place); `adapter=None` in the methods below means the base itself.
    """

    def __init__(self, model_dir: Path, adapters: dict[str, Path] | None = None):
        from peft import PeftModel

        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.adapted = {name: PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), path).eval()
                        for name, path in (adapters or {}).items()}
        self.lock = threading.Lock()

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def piece(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    @torch.no_grad()
    def log_softmax(self, ids: list[int], adapter: str | None = None) -> torch.Tensor:
        """Row i: log-probabilities of the token after ids[:i+1]."""
        model = self.model if adapter is None else self.adapted[adapter]
        with self.lock:
            logits = model(torch.tensor([ids])).logits[0]
        return torch.log_softmax(logits.float(), dim=-1)

    def prompt_logprobs(self, ids: list[int], adapter: str | None = None) -> list[tuple[float, int, int] | None]:
        """Per position: None for the first token, else (logprob of the token, its rank, the argmax id)."""
        rows = self.log_softmax(ids, adapter)
        out: list[tuple[float, int, int] | None] = [None]
        for position in range(1, len(ids)):
            row = rows[position - 1]
            value = row[ids[position]]
            out.append((float(value), int((row > value).sum()) + 1, int(row.argmax())))
        return out

    def greedy(self, ids: list[int], max_new: int, stop: list[str],
               adapter: str | None = None) -> tuple[list[int], list[float], str]:
        """Greedy continuation: new ids, their logprobs, and why it ended (length | eos_token | stop_sequence)."""
        new: list[int] = []
        logprobs: list[float] = []
        for _ in range(max_new):
            row = self.log_softmax(ids + new, adapter)[-1]
            token = int(row.argmax())
            new.append(token)
            logprobs.append(float(row[token]))
            if token == self.tokenizer.eos_token_id:
                return new, logprobs, "eos_token"
            if any(s and s in self.tokenizer.decode(new, skip_special_tokens=True) for s in stop):
                return new, logprobs, "stop_sequence"
        return new, logprobs, "length"


class FakeServer:
    """A real HTTP server on 127.0.0.1 (an ephemeral port) in a daemon thread; use as a context manager."""

    flavour = ""

    def __init__(self, model_dir: Path, behaviour: Behaviour | None = None, adapters: dict[str, Path] | None = None):
        self.model = TinyModel(model_dir, adapters)
        self.adapters = dict(adapters or {})
        self.model_dir = model_dir
        self.behaviour = behaviour or Behaviour()
        self.counters = Counters()
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"server_impl": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"fake-{self.flavour}", daemon=True)

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def record(self, handler: str) -> list[Any]:
        """The request bodies the inference handler `handler` (generate, complete) receives from now on, in order."""
        sent: list[Any] = []
        original = getattr(self, handler)
        setattr(self, handler, lambda body: sent.append(body) or original(body))
        return sent

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """(status, JSON body) for one request, after the injected failures."""
        inference = method == "POST"
        with self._lock:
            self.counters.requests += 1
            self.counters.paths.append(f"{method} {path}")
            if self.behaviour.loading_responses > 0:
                self.behaviour.loading_responses -= 1
                self.counters.answered_503 += 1
                return 503, self.error_body("the model is loading", "unhealthy", 503)
            if inference:
                self.counters.inference += 1
                if self.behaviour.flaky_inference > 0:
                    self.behaviour.flaky_inference -= 1
                    self.counters.answered_500 += 1
                    return 500, self.error_body("transient failure", "incomplete_generation", 500)
        return self.route(method, path, body)

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        raise NotImplementedError

    def error_body(self, message: str, kind: str, status: int) -> Any:
        raise NotImplementedError


class FakeTGI(FakeServer):
    """`/generate`, `/health`, `/info` of text-generation-inference."""

    flavour = "tgi"

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if (method, path) == ("GET", "/health"):
            return 200, None
        if (method, path) == ("GET", "/info"):
            b = self.behaviour
            return 200, {
                "model_id": str(self.model_dir), "model_sha": None, "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": 128, "max_best_of": 2, "max_stop_sequences": b.max_stop_sequences,
                "max_input_tokens": b.max_input_tokens, "max_total_tokens": b.max_total_tokens,
                "validation_workers": 2, "max_client_batch_size": 4, "router": "text-generation-router",
                "version": "3.3.4", "sha": None, "docker_label": None,
            }
        if (method, path) == ("POST", "/generate"):
            return self.generate(body)
        return 404, self.error_body(f"no route {method} {path}", "not_found", 404)

    def error_body(self, message: str, kind: str, status: int) -> Any:
        return {"error": message, "error_type": kind}

    def generate(self, body: dict[str, Any]) -> tuple[int, Any]:
        inputs = body.get("inputs")
        params = body.get("parameters") or {}
        if not isinstance(inputs, str) or not inputs:
            return 422, self.error_body("Input validation error: `inputs` cannot be empty", "validation", 422)
        stop = list(params.get("stop") or [])
        b = self.behaviour
        if len(stop) > b.max_stop_sequences:
            return 422, self.error_body(f"Input validation error: `stop` supports up to {b.max_stop_sequences} "
                                        f"stop sequences. Given: {len(stop)}", "validation", 422)
        ids = self.model.encode(inputs, add_special_tokens=body.get("add_special_tokens", True))
        max_new = int(params.get("max_new_tokens") or 20)
        if len(ids) > b.max_input_tokens or len(ids) + max_new > b.max_total_tokens:
            return 422, self.error_body(f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                                        f"{b.max_total_tokens}. Given: {len(ids)} `inputs` tokens and {max_new} "
                                        "`max_new_tokens`", "validation", 422)
        wants_prefill = bool(params.get("decoder_input_details"))
        if wants_prefill and b.prefill == "error":
            return 422, self.error_body("Input validation error: prompt logprobs are not available on this "
                                        "server", "validation", 422)
        adapter = params.get("adapter_id")
        adapter = adapter if adapter in self.adapters else None  # TGI: an unknown adapter_id is the base model
        new, logprobs, reason = self.model.greedy(ids, max_new, stop, adapter)
        text = self.model.tokenizer.decode(new, skip_special_tokens=True)
        if params.get("return_full_text"):
            text = inputs + text
        if not params.get("details"):
            return 200, {"generated_text": text}
        prefill = []
        if wants_prefill and b.prefill == "enabled":
            for token_id, scored in zip(ids, self.model.prompt_logprobs(ids, adapter)):
                prefill.append({"id": token_id, "text": self.model.piece(token_id),
                                "logprob": None if scored is None else scored[0]})
        tokens = [{"id": t, "text": self.model.piece(t), "logprob": lp, "special": t in self.model.tokenizer.all_special_ids}
                  for t, lp in zip(new, logprobs)]
        details = {"finish_reason": reason, "generated_tokens": len(new), "seed": None, "prefill": prefill,
                   "tokens": tokens, "top_tokens": []}
        return 200, {"generated_text": text, "details": details}


class FakeVLLM(FakeServer):
    """`/v1/completions`, `/v1/models`, `/health` of vLLM's OpenAI-compatible server."""

    flavour = "vllm"
    served_name = "tiny-llama"

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if (method, path) == ("GET", "/health"):
            return 200, None
        if (method, path) == ("GET", "/v1/models"):
            created = int(time.time())
            loras = [{"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": str(path),
                      "parent": self.served_name} for name, path in self.adapters.items()]
            return 200, {"object": "list", "data": [{
                "id": self.served_name, "object": "model", "created": created, "owned_by": "vllm",
                "root": str(self.model_dir), "parent": None, "max_model_len": self.behaviour.max_total_tokens,
            }, *loras]}
        if (method, path) == ("POST", "/v1/completions"):
            return self.complete(body)
        return 404, self.error_body(f"no route {method} {path}", "NotFoundError", 404)

    def error_body(self, message: str, kind: str, status: int) -> Any:
        return {"error": {"message": message, "type": kind, "param": None, "code": status}}

    def complete(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("model") not in (None, self.served_name, *self.adapters):
            return 404, self.error_body(f"The model `{body.get('model')}` does not exist.", "NotFoundError", 404)
        adapter = body.get("model") if body.get("model") in self.adapters else None
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            ids = self.model.encode(prompt, add_special_tokens=body.get("add_special_tokens", True))
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            ids = list(prompt)
        else:
            return 400, self.error_body("this fake serves one prompt per request: a string or a list of token ids",
                                        "BadRequestError", 400)
        max_tokens = int(body.get("max_tokens", 16))
        if len(ids) + max_tokens > self.behaviour.max_total_tokens:
            return 400, self.error_body(f"This model's maximum context length is {self.behaviour.max_total_tokens} "
                                        f"tokens. However, you requested {len(ids) + max_tokens} tokens",
                                        "BadRequestError", 400)
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        echo, top_k = bool(body.get("echo")), body.get("logprobs")
        new, new_logprobs, reason = self.model.greedy(ids, max_tokens, stop, adapter) if max_tokens else ([], [], "length")
        text = self.model.tokenizer.decode(new, skip_special_tokens=True)
        for s in stop:
            if s and s in text:
                text = text[: text.index(s)]
        scored = self.model.prompt_logprobs(ids, adapter)
        rows = self.model.log_softmax(ids + new, adapter)  # row p: the distribution of token p + 1
        choice: dict[str, Any] = {
            "index": 0, "text": (self.model.tokenizer.decode(ids) if echo else "") + text,
            "finish_reason": "stop" if reason != "length" else "length", "stop_reason": None,
            "logprobs": None, "prompt_logprobs": None,
        }
        if body.get("prompt_logprobs") is not None and self.behaviour.prompt_logprobs:
            choice["prompt_logprobs"] = self._prompt_logprobs(ids, scored, rows, int(body["prompt_logprobs"]))
        if top_k is not None:
            choice["logprobs"] = self._openai_logprobs(ids, scored, rows, new, new_logprobs, echo, int(top_k))
        usage = {"prompt_tokens": len(ids), "completion_tokens": len(new), "total_tokens": len(ids) + len(new)}
        return 200, {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
                     "model": body.get("model") or self.served_name, "choices": [choice], "usage": usage}

    def _prompt_logprobs(self, ids: list[int], scored: list[tuple[float, int, int] | None], rows: torch.Tensor,
                         k: int) -> list[Any]:
        out: list[Any] = []
        for position, entry in enumerate(scored):
            if entry is None:
                out.append(None)
                continue
            top = _top(rows[position - 1], k)
            top[ids[position]] = (entry[0], entry[1])
            out.append({str(t): {"logprob": lp, "rank": rank, "decoded_token": self.model.piece(t)}
                        for t, (lp, rank) in top.items()})
        return out

    def _openai_logprobs(self, ids: list[int], scored: list[tuple[float, int, int] | None], rows: torch.Tensor,
                         new: list[int], new_logprobs: list[float], echo: bool, k: int) -> dict[str, Any]:
        piece = self.model.piece
        tokens: list[str] = []
        values: list[float | None] = []
        tops: list[dict[str, float] | None] = []
        if echo:
            for position, entry in enumerate(scored):
                tokens.append(piece(ids[position]))
                values.append(None if entry is None else entry[0])
                if entry is None:
                    tops.append(None)
                    continue
                top = {piece(t): lp for t, (lp, _rank) in _top(rows[position - 1], k).items()}
                top[piece(ids[position])] = entry[0]
                tops.append(top)
        for position, (token, value) in enumerate(zip(new, new_logprobs)):
            tokens.append(piece(token))
            values.append(value)
            tops.append({piece(t): lp for t, (lp, _rank) in _top(rows[len(ids) - 1 + position], k).items()})
        offsets, cursor = [], 0
        for token in tokens:
            offsets.append(cursor)
            cursor += len(token)
        return {"text_offset": offsets, "token_logprobs": values, "tokens": tokens, "top_logprobs": tops}


class FakeSGLang(FakeServer):
    """`/generate`, `/update_weights_from_disk`, `/get_server_info`, `/health` of SGLang's native HTTP server.

    It stands in for SGLang itself, which has no CPU build to install from PyPI (its kernels come as CUDA
    wheels only), so its client is tested against this look-alike of its documented routes (sglang 0.5,
    python/sglang/srt/entrypoints/http_server.py and managers/io_struct.py): GenerateReqInput with
    `input_ids`, `sampling_params` {max_new_tokens, temperature, stop}, `return_logprob`, `logprob_start_len`,
    `top_logprobs_num` → {"text", "meta_info": {"input_token_logprobs": [[logprob, id, null]] from
    logprob_start_len (null for the very first token), "input_top_logprobs": [[[logprob, id, null]]]}};
    UpdateWeightFromDiskReqInput {model_path, ...} → {"success", "message", "num_paused_requests"}, 400 when
    it fails. A weight update reads every *.safetensors of model_path into the served model.
    """

    flavour = "sglang"

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if (method, path) == ("GET", "/health"):
            return 200, None
        if (method, path) == ("GET", "/get_server_info"):
            return 200, {"model_path": str(self.model_dir), "context_length": self.behaviour.max_total_tokens,
                         "max_req_input_len": self.behaviour.max_total_tokens - 1, "version": "0.5 (look-alike)"}
        if (method, path) == ("POST", "/generate"):
            return self.generate(body)
        if (method, path) == ("POST", "/update_weights_from_disk"):
            return self.update_weights(body)
        return 404, self.error_body(f"no route {method} {path}", "Not Found", 404)

    def error_body(self, message: str, kind: str, status: int) -> Any:
        return {"object": "error", "message": message, "type": kind, "param": None, "code": status}

    def generate(self, body: dict[str, Any]) -> tuple[int, Any]:
        ids = body.get("input_ids")
        if not (isinstance(ids, list) and ids and all(isinstance(t, int) for t in ids)):
            return 400, self.error_body("this look-alike serves one request of input_ids", "Bad Request", 400)
        params = body.get("sampling_params") or {}
        max_new = int(params.get("max_new_tokens", 128))
        if len(ids) + max_new > self.behaviour.max_total_tokens:
            return 400, self.error_body(f"The input ({len(ids)} tokens) is longer than the model's context length "
                                        f"({self.behaviour.max_total_tokens} tokens).", "Bad Request", 400)
        stop = params.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        new, _logprobs, _reason = self.model.greedy(ids, max_new, stop) if max_new else ([], [], "length")
        text = self.model.tokenizer.decode(new, skip_special_tokens=True)
        for s in stop:
            if s and s in text:
                text = text[: text.index(s)]
        meta: dict[str, Any] = {"prompt_tokens": len(ids), "completion_tokens": len(new)}
        if body.get("return_logprob"):
            start = int(body.get("logprob_start_len", 0))
            scored = self.model.prompt_logprobs(ids)
            meta["input_token_logprobs"] = [[None if e is None else e[0], ids[p], None]
                                            for p, e in enumerate(scored) if p >= start]
            if int(body.get("top_logprobs_num") or 0) > 0:
                rows = self.model.log_softmax(ids)
                meta["input_top_logprobs"] = [
                    None if p == 0 else [[float(rows[p - 1].max()), int(rows[p - 1].argmax()), None]]
                    for p in range(start, len(ids))]
        return 200, {"text": text, "meta_info": meta}

    def update_weights(self, body: dict[str, Any]) -> tuple[int, Any]:
        from safetensors.torch import load_file

        folder = Path(str((body or {}).get("model_path", "")))
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            return 400, {"success": False, "message": f"no safetensors weights in {folder}", "num_paused_requests": 0}
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(str(file)))
        with self.model.lock:
            missing, unexpected = self.model.model.load_state_dict(state, strict=False)
        if unexpected:
            return 400, {"success": False, "message": f"unexpected weights {unexpected[:3]}", "num_paused_requests": 0}
        return 200, {"success": True, "message": "Succeeded to update model weights.", "num_paused_requests": 0}


def _top(row: torch.Tensor, k: int) -> dict[int, tuple[float, int]]:
    """The k most likely token ids of one distribution, with their logprob and rank."""
    values, indices = row.topk(k)
    return {int(i): (float(v), rank + 1) for rank, (v, i) in enumerate(zip(values, indices))}


class _Handler(BaseHTTPRequestHandler):
    server_impl: FakeServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._reply(*self.server_impl.answer("GET", self.path, None))

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError:
            self._reply(400, {"error": "body is not JSON", "error_type": "validation"})
            return
        self._reply(*self.server_impl.answer("POST", self.path, body))

    def _reply(self, status: int, body: Any) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean; failures surface through the engines' errors."""
