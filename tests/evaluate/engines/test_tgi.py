"""The TGI engine rides through loading and flaky servers, and explains the failures it cannot fix."""

from __future__ import annotations

import pytest
from lm_eval.api.instance import Instance
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from evomerge.evaluate.engines import make_server_lm
from evomerge.evaluate.engines.options import EngineOptions
from evomerge.evaluate.engines.transport import PrefillLogprobsUnavailable, ServerNotReady, TokenizationMismatch
from tests.evaluate.support import FAST
from tests.support.fake_servers import Behaviour, FakeTGI
from tests.support.tiny_models import WORDS, build_lora_adapter

PAIRS = [("the sky is", " blue"), ("the grass", " is green")]


def _loglikelihood(lm, pairs=PAIRS):
    return lm.loglikelihood([Instance("loglikelihood", {}, p, i, ("t", i, 1)) for i, p in enumerate(pairs)])


def _options(server, **extra) -> EngineOptions:
    return EngineOptions(engine="tgi", url=server.url, **{**FAST, **extra})


@pytest.fixture(scope="module")
def tokenizer(tiny_family):
    return AutoTokenizer.from_pretrained(tiny_family["base"])


@pytest.mark.parametrize("prefill", ["error", "empty"])
def test_server_without_prefill_logprobs_fails_with_the_flag_to_set(prefill, tiny_family, tokenizer):
    with FakeTGI(tiny_family["base"], Behaviour(prefill=prefill)) as server:
        lm = make_server_lm(_options(server), tokenizer)
        with pytest.raises(PrefillLogprobsUnavailable, match="--enable-prefill-logprobs"):
            _loglikelihood(lm)
        lm.close()


def test_waits_through_503_while_loading(tiny_family, tokenizer):
    with FakeTGI(tiny_family["base"], Behaviour(loading_responses=5)) as server:
        lm = make_server_lm(_options(server), tokenizer)
        scores = _loglikelihood(lm)
        lm.close()
        assert server.counters.answered_503 == 5
    assert all(lp < 0 for lp, _ in scores)


def test_retries_a_flaky_500(tiny_family, tokenizer, tgi):
    steady = make_server_lm(_options(tgi), tokenizer)
    expected = _loglikelihood(steady)
    steady.close()
    with FakeTGI(tiny_family["base"], Behaviour(flaky_inference=2)) as server:
        lm = make_server_lm(_options(server, concurrency=1), tokenizer)
        assert _loglikelihood(lm) == expected
        lm.close()
        assert server.counters.answered_500 == 2


def test_gives_up_after_the_retry_budget(tiny_family, tokenizer):
    with FakeTGI(tiny_family["base"], Behaviour(flaky_inference=100)) as server:
        lm = make_server_lm(_options(server, retry_attempts=3, concurrency=1), tokenizer)
        with pytest.raises(RuntimeError, match="still failing after 3 attempts .*HTTP 500: transient failure"):
            _loglikelihood(lm)
        lm.close()


def test_a_server_that_never_gets_ready_is_a_clear_error(tiny_family, tokenizer):
    with FakeTGI(tiny_family["base"], Behaviour(loading_responses=10**6)) as server:
        with pytest.raises(ServerNotReady, match=rf"{server.url} did not become ready within 0.2s \(last answer: GET {server.url}/health did not answer 200"):
            make_server_lm(_options(server, ready_timeout_s=0.2), tokenizer)


def test_nothing_listening_is_a_clear_error(tokenizer):
    with pytest.raises(ServerNotReady, match="did not become ready"):
        make_server_lm(EngineOptions(engine="tgi", url="http://127.0.0.1:9", ready_timeout_s=0.2, **FAST), tokenizer)


def test_more_stop_sequences_than_the_server_allows_are_cut_client_side(tgi, tokenizer):
    lm = make_server_lm(_options(tgi), tokenizer)
    until = ["red", "yes", "no", "a", "b", "green"]  # TGI accepts 4 (its /info says so)
    text = lm.generate_until([Instance("generate_until", {}, ("the sky is", {"until": until, "max_gen_toks": 6}), 0,
                                       ("t", 0, 1))])[0]
    lm.close()
    assert not any(stop in text for stop in until)


def test_a_tokenizer_other_than_the_served_ones_is_refused(tiny_family, tgi):
    # Same words, two ids swapped: every "sky" the engine sends is "grass" to the server.
    vocab = {w: i for i, w in enumerate(WORDS)}
    vocab["sky"], vocab["grass"] = vocab["grass"], vocab["sky"]
    swapped = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    swapped.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    other = PreTrainedTokenizerFast(tokenizer_object=swapped, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                    eos_token="</s>")
    lm = make_server_lm(_options(tgi), other)
    with pytest.raises(TokenizationMismatch, match="served model's tokenizer"):
        _loglikelihood(lm)
    lm.close()


def test_an_adapter_is_selected_on_every_request_by_adapter_id(tiny_family, tokenizer, tmp_path):
    adapter = build_lora_adapter(tiny_family["base"], tmp_path / "lora", std=0.5)
    with FakeTGI(tiny_family["base"], adapters={"candidate": adapter}) as server:
        sent = server.record("generate")
        base = _loglikelihood(make_server_lm(_options(server), tokenizer))
        for_base = [b["parameters"].get("adapter_id") for b in sent]
        sent.clear()
        adapted = _loglikelihood(make_server_lm(_options(server, adapter="candidate"), tokenizer))
    assert for_base and set(for_base) == {None}
    assert sent and {b["parameters"].get("adapter_id") for b in sent} == {"candidate"}
    assert [lp for lp, _ in adapted] != pytest.approx([lp for lp, _ in base], abs=1e-3)
