"""Server engines score exactly what the resident engine scores: same tokens, same numbers, every task type.

vLLM is the real server (its CPU build, hack/vllm/install.sh) on the tiny word-level family, hosting a
combined LoRA adapter as evaluation pods do — so its LoRA scoring runs one request at a time, the guard
against the CPU build's crash on concurrent prompt_logprobs (engines/vllm.py). TGI and SGLang have no build
that runs here (TGI is archived, SGLang has no CPU build): their look-alikes (tests/support/fake_servers.py)
compute with the same tiny model as lm-eval's HFLM, so any difference comes from tokenisation boundaries,
request shapes or response parsing — the things the engines own.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch
from lm_eval.api.instance import Instance
from transformers import AutoModelForCausalLM, AutoTokenizer

from evomerge.evaluate.engines import make_server_lm
from evomerge.evaluate.engines.options import EngineOptions
from evomerge.evaluate.engines.resident import load_hflm
from evomerge.evaluate.engines.vllm_process import VLLMServerProcess
from evomerge.evaluate.model import evaluate_model
from evomerge.merge.adapter import recipe_adapter
from evomerge.merge.export import export_merge
from evomerge.merge.inputs import open_recipe_inputs
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from tests.evaluate.support import ALL_TYPES, FAST
from tests.support.fake_servers import FakeSGLang, FakeTGI
from tests.support.tiny_models import build_family, build_lora_adapter

PAIRS = [
    ("the sky is", " blue"),
    ("the sky is", " green red blue"),  # several continuation tokens
    ("", "yes no"),  # empty context: conditioned on the prefix token
    ("the grass is ", "green"),  # trailing space moves to the continuation
    ("a b a b", " a"),
]
LOOK_ALIKES = {"tgi": FakeTGI, "sglang": FakeSGLang}
MAX_MODEL_LEN = 64  # the family's max_position_embeddings


def _requests(kind: str, args: list[tuple], task: str = "t") -> list[Instance]:
    return [Instance(kind, {}, a, i, (task, i, 1)) for i, a in enumerate(args)]


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> dict[str, Path]:
    """The tiny word-level family at width 128: vLLM's CPU attention takes its head size (32), not the default 8."""
    return build_family(tmp_path_factory.mktemp("family"), hidden=128)


@pytest.fixture(scope="module")
def resident(family):
    tokenizer = AutoTokenizer.from_pretrained(family["base"])
    model = AutoModelForCausalLM.from_pretrained(family["base"]).eval()
    return load_hflm(model, tokenizer, 4, "cpu"), tokenizer


@pytest.fixture(scope="module")
def real_vllm(family, lora_candidate, tmp_path_factory) -> Iterator[VLLMServerProcess]:
    """The real vLLM server on the family's base, hosting the LoRA candidate's combined adapter as "candidate"."""
    args = ("--enable-lora", "--max-loras", "1", "--max-lora-rank", "8",
            "--lora-modules", f"candidate={lora_candidate['adapter']}")
    with VLLMServerProcess.start(family["base"], tmp_path_factory.mktemp("vllm") / "vllm.log",
                                 max_model_len=MAX_MODEL_LEN, extra_args=args) as server:
        yield server


@pytest.fixture
def serving(request, family):
    """engine → a context manager serving `family`'s base: the real vLLM server (which hosts the LoRA candidate's
    adapter from its start), or a look-alike started here with the given adapters."""
    @contextmanager
    def serve(engine: str, **kwargs) -> Iterator[str]:
        if engine == "vllm":
            yield request.getfixturevalue("real_vllm").url
            return
        with LOOK_ALIKES[engine](family["base"], **kwargs) as server:
            yield server.url

    return serve


def options(engine: str, url: str, **extra) -> EngineOptions:
    """The real vLLM server is the CPU build: device cpu, as evaluation pods on CPU nodes say."""
    return EngineOptions(engine=engine, url=url, **({"device": "cpu"} if engine == "vllm" else {}), **FAST, **extra)


def _with_greedy_pair(hflm, tokenizer) -> list[tuple[str, str]]:
    """PAIRS plus a two-word continuation the model itself would decode greedily (is_greedy must be True)."""
    for context in ("the sky is", "the grass is", "a b", "is the", "yes no", "red green"):
        ids = tokenizer.encode(context)
        words = []
        for _ in range(2):
            with torch.no_grad():
                token = int(hflm.model(torch.tensor([ids])).logits[0, -1].argmax())
            if token in tokenizer.all_special_ids:
                break
            ids.append(token)
            words.append(tokenizer.decode([token]))
        if len(words) == 2:
            return PAIRS + [(context, " " + " ".join(words))]
    raise AssertionError("the tiny model decodes a special token first after every probe context")


@pytest.mark.parametrize("engine", ["tgi", "vllm", "sglang"])
def test_loglikelihood_per_request_matches_resident(engine, resident, serving):
    hflm, tokenizer = resident
    pairs = _with_greedy_pair(hflm, tokenizer)
    expected = hflm.loglikelihood(_requests("loglikelihood", pairs))
    assert any(greedy for _, greedy in expected) and not all(greedy for _, greedy in expected)
    with serving(engine) as url:
        lm = make_server_lm(options(engine, url), tokenizer)
        got = lm.loglikelihood(_requests("loglikelihood", pairs))
        lm.close()
    for (pair, (want_lp, want_greedy), (got_lp, got_greedy)) in zip(pairs, expected, got, strict=True):
        assert got_lp == pytest.approx(want_lp, abs=1e-4), pair
        assert got_greedy == want_greedy, pair


@pytest.mark.parametrize("engine", ["tgi", "vllm", "sglang"])
def test_rolling_and_generation_match_resident(engine, resident, serving):
    hflm, tokenizer = resident
    texts = [("the sky is blue and the grass is green",), ("a b a b a b a b",)]
    prompts = [("the sky is", {"until": ["?"], "max_gen_toks": 4}), ("is the", {"until": ["green"], "max_gen_toks": 5})]
    with serving(engine) as url:
        lm = make_server_lm(options(engine, url), tokenizer)
        rolling = lm.loglikelihood_rolling(_requests("loglikelihood_rolling", texts))
        generated = lm.generate_until(_requests("generate_until", prompts))
        lm.close()
    assert rolling == pytest.approx(hflm.loglikelihood_rolling(_requests("loglikelihood_rolling", texts)), abs=1e-4)
    assert generated == hflm.generate_until(_requests("generate_until", prompts))


@pytest.mark.parametrize("engine", ["tgi", "vllm", "sglang"])
def test_every_task_type_scores_like_the_resident_engine(engine, family, task_dir, serving):
    expected = evaluate_model(family["base"], ALL_TYPES, [str(task_dir)])
    with serving(engine) as url:
        got = evaluate_model(family["base"], ALL_TYPES, [str(task_dir)], options(engine, url))
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-5), key


def test_vllm_echo_mode_matches_prompt_logprobs(resident, real_vllm):
    hflm, tokenizer = resident
    pairs = _with_greedy_pair(hflm, tokenizer)
    lms = [make_server_lm(options("vllm", real_vllm.url, logprobs=mode), tokenizer) for mode in ("prompt_logprobs", "echo")]
    by_prompt_logprobs, by_echo = (lm.loglikelihood(_requests("loglikelihood", pairs)) for lm in lms)
    for lm in lms:
        lm.close()
    assert [g for _, g in by_echo] == [g for _, g in by_prompt_logprobs]
    assert [lp for lp, _ in by_echo] == pytest.approx([lp for lp, _ in by_prompt_logprobs], abs=1e-6)


def test_tgi_checks_greedy_only_for_tasks_that_read_it(resident, tgi):
    _, tokenizer = resident
    lm = make_server_lm(EngineOptions(engine="tgi", url=tgi.url, **FAST), tokenizer, greedy_tasks=frozenset({"lambada"}))
    before = tgi.counters.inference
    lm.loglikelihood(_requests("loglikelihood", PAIRS, task="multiple_choice_task"))
    plain = tgi.counters.inference - before
    lm.loglikelihood(_requests("loglikelihood", PAIRS, task="lambada"))
    lm.close()
    assert plain == len(PAIRS)  # one /generate each
    assert tgi.counters.inference - before - plain == 2 * len(PAIRS)  # plus one greedy decode each


@pytest.fixture(scope="module")
def lora_candidate(family, tmp_path_factory) -> dict[str, Path]:
    """A task-arithmetic candidate over two LoRA experts: its merged checkpoint and its combined adapter."""
    root = tmp_path_factory.mktemp("lora_candidate")
    experts = {
        "lora0": build_lora_adapter(family["base"], root / "lora0", rank=4, seed=1, std=0.6),
        "lora1": build_lora_adapter(family["base"], root / "lora1", rank=2, alpha=4.0, seed=2, std=0.6,
                                    targets=("q_proj", "o_proj", "up_proj")),
    }
    recipe = MergeRecipe("task_arithmetic", str(family["base"]), (
        ExpertWeights("lora0", str(experts["lora0"]), {"weight": {"all": 0.9}}),
        ExpertWeights("lora1", str(experts["lora1"]), {"weight": {"all": 0.7}}),
    ), options={"lambda": 1.2})
    base, inputs = open_recipe_inputs(recipe)
    export_merge(recipe, base, inputs, root / "merged")
    return {"merged": root / "merged", "adapter": recipe_adapter(recipe, base, inputs, root / "adapter")}


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_a_combined_adapter_over_the_base_scores_like_the_merged_checkpoint(engine, task_dir, lora_candidate, serving):
    """On the real vLLM server (CPU build) the adapter's scoring goes one request at a time, eight threads asking:
    concurrent prompt_logprobs requests on a server hosting LoRA adapters crash the CPU build's engine."""
    expected = evaluate_model(lora_candidate["merged"], ALL_TYPES, [str(task_dir)])
    with serving(engine, adapters={"candidate": lora_candidate["adapter"]}) as url:
        # The adapter directory carries the base's tokenizer, so the scorer reads it like a checkpoint.
        got = evaluate_model(lora_candidate["adapter"], ALL_TYPES, [str(task_dir)],
                             options(engine, url, concurrency=8, adapter="candidate"))
        base = evaluate_model(lora_candidate["adapter"], ALL_TYPES, [str(task_dir)], options(engine, url, concurrency=8))
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-4), key
    # Without the adapter the server scores the base: the comparison above can tell the two apart.
    assert base["tiny_next/perplexity"] != pytest.approx(expected["tiny_next/perplexity"], rel=0.01)  # 100× the tolerance above
