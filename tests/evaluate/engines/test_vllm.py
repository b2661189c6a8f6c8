"""The vLLM engine: token ids in, prompt log-probabilities out; loading, flaky and misconfigured servers."""

from __future__ import annotations

import pytest
from lm_eval.api.instance import Instance
from transformers import AutoTokenizer

from evomerge.evaluate.engines import make_server_lm
from evomerge.evaluate.engines.options import EngineOptions
from evomerge.evaluate.engines.transport import ServerError
from tests.evaluate.support import FAST
from tests.support.fake_servers import Behaviour, FakeVLLM
from tests.support.tiny_models import build_lora_adapter

PAIRS = [("the sky is", " blue"), ("", "a b")]


def _loglikelihood(lm):
    return lm.loglikelihood([Instance("loglikelihood", {}, p, i, ("t", i, 1)) for i, p in enumerate(PAIRS)])


def _options(server, **extra) -> EngineOptions:
    return EngineOptions(engine="vllm", url=server.url, **{**FAST, **extra})


@pytest.fixture(scope="module")
def tokenizer(tiny_family):
    return AutoTokenizer.from_pretrained(tiny_family["base"])


def test_sends_token_ids_not_text(vllm, tokenizer):
    sent = vllm.record("complete")
    lm = make_server_lm(_options(vllm), tokenizer)
    _loglikelihood(lm)
    lm.close()
    # Requests run concurrently: compare as a set of prompts.
    assert sorted(body["prompt"] for body in sent) == sorted([tokenizer.encode("the sky is blue"),
                                                              [tokenizer.bos_token_id, *tokenizer.encode("a b")]])
    assert all(body["prompt_logprobs"] == 1 and body["model"] == FakeVLLM.served_name for body in sent)


def test_waits_through_503_and_retries_a_flaky_500(tiny_family, tokenizer, vllm):
    steady = make_server_lm(_options(vllm), tokenizer)
    expected = _loglikelihood(steady)
    steady.close()
    with FakeVLLM(tiny_family["base"], Behaviour(loading_responses=3, flaky_inference=2)) as server:
        lm = make_server_lm(_options(server, concurrency=1), tokenizer)
        assert _loglikelihood(lm) == expected
        lm.close()
        assert (server.counters.answered_503, server.counters.answered_500) == (3, 2)


def test_server_without_prompt_logprobs_points_to_echo(tiny_family, tokenizer):
    with FakeVLLM(tiny_family["base"], Behaviour(prompt_logprobs=False)) as server:
        lm = make_server_lm(_options(server), tokenizer)
        with pytest.raises(ServerError, match="set engine_options.logprobs: echo"):
            _loglikelihood(lm)
        lm.close()
        echo = make_server_lm(_options(server, logprobs="echo"), tokenizer)
        assert all(lp < 0 for lp, _ in _loglikelihood(echo))
        echo.close()


def test_unknown_served_model_names_what_is_served(vllm, tokenizer):
    with pytest.raises(ServerError, match=f"'other' is not served at {vllm.url}; it serves {FakeVLLM.served_name}"):
        make_server_lm(_options(vllm, served_model="other"), tokenizer)


def test_a_rejected_request_reports_the_servers_message(vllm, tokenizer):
    lm = make_server_lm(_options(vllm), tokenizer)
    vllm.behaviour.max_total_tokens = 4  # restarted with a shorter context than the engine was told
    with pytest.raises(ServerError, match="rejected the request — HTTP 400: This model's maximum context length is 4"):
        _loglikelihood(lm)
    lm.close()


def test_an_adapter_is_requested_as_its_model_and_a_missing_one_names_the_flag(tiny_family, tokenizer, tmp_path):
    adapter = build_lora_adapter(tiny_family["base"], tmp_path / "lora", std=0.5)
    with FakeVLLM(tiny_family["base"], adapters={"candidate": adapter}) as server:
        sent = server.record("complete")
        lm = make_server_lm(_options(server, adapter="candidate"), tokenizer)
        adapted = _loglikelihood(lm)
        assert lm.max_length == server.behaviour.max_total_tokens - 2  # the LoRA entry's parent gives the length
        base = _loglikelihood(make_server_lm(_options(server), tokenizer))
    assert [b["model"] for b in sent] == ["candidate"] * len(PAIRS) + [FakeVLLM.served_name] * len(PAIRS)
    assert [lp for lp, _ in adapted] != pytest.approx([lp for lp, _ in base], abs=1e-3)
    with FakeVLLM(tiny_family["base"]) as server:
        with pytest.raises(ServerError, match="--enable-lora --lora-modules candidate=DIR"):
            make_server_lm(_options(server, adapter="candidate"), tokenizer)
