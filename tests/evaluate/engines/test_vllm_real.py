"""The vLLM engine against the real vLLM server on the nano zoo: the in-process engine's numbers, before and
after an in-place swap to another checkpoint of the same shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lm_eval.api.instance import Instance
from transformers import AutoModelForCausalLM, AutoTokenizer

from evomerge.evaluate.engines import make_server_lm
from evomerge.evaluate.engines.options import EngineOptions
from evomerge.evaluate.engines.resident import load_hflm
from evomerge.evaluate.tasks import TaskSuite
from evomerge.spec.merge_search import Objective
from evomerge.zoo.skills import ANSWER_END
from tests.support.vllm import ANSWER_TASK, write_answer_task

ITEMS = 12  # zoo prompts per request type: enough to see a difference, cheap on a 2-core CPU


def _pairs(zoo) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (zoo.tasks_dir / "pairs_search.jsonl").read_text().splitlines()]
    return [(row["prompt"], row["answer"]) for row in rows[:ITEMS]]


def _loglikelihood(lm, pairs):
    return lm.loglikelihood([Instance("loglikelihood", {}, p, i, ("t", i, 1)) for i, p in enumerate(pairs)])


def _generate(lm, pairs):
    kwargs = {"until": [ANSWER_END], "max_gen_toks": 8, "do_sample": False}
    return lm.generate_until([Instance("generate_until", {}, (prompt, kwargs), i, ("g", i, 1))
                              for i, (prompt, _answer) in enumerate(pairs)])


def _resident(model_dir: Path, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    return load_hflm(model, tokenizer, 8, "cpu")


@pytest.fixture(scope="module")
def loglikelihood_task(nano_zoo, tmp_path_factory) -> Path:
    """A loglikelihood task over the zoo's two-skill prompts (the zoo's own tasks are generate_until)."""
    directory = tmp_path_factory.mktemp("tasks")
    write_answer_task(nano_zoo, directory)
    return directory


@pytest.fixture
def served(vllm_server, nano_zoo):
    """The vLLM engine over the session's server; whatever a test swapped in, the base is served again after it."""
    tokenizer = AutoTokenizer.from_pretrained(nano_zoo.base)
    lm = make_server_lm(EngineOptions(engine="vllm", url=vllm_server.url), tokenizer)
    yield lm, tokenizer
    lm.backend.swap_weights(nano_zoo.base)
    lm.close()


def test_scores_equal_the_in_process_engine_before_and_after_an_in_place_swap(served, nano_zoo):
    lm, tokenizer = served
    pairs = _pairs(nano_zoo)
    expert = nano_zoo.experts[nano_zoo.skills[0]]
    seen = []
    for model_dir in (nano_zoo.base, expert):
        if model_dir != nano_zoo.base:
            lm.backend.swap_weights(model_dir)
        resident = _resident(model_dir, tokenizer)
        expected, got = _loglikelihood(resident, pairs), _loglikelihood(lm, pairs)
        assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in expected], abs=1e-4)
        assert [greedy for _, greedy in got] == [greedy for _, greedy in expected]
        assert _generate(lm, pairs) == _generate(resident, pairs)
        seen.append([lp for lp, _ in got])
    # The swap took: the expert's numbers are not the base's.
    assert seen[0] != pytest.approx(seen[1], abs=1e-3)


def test_task_scores_equal_the_in_process_engine_after_a_swap(served, nano_zoo, loglikelihood_task):
    lm, tokenizer = served
    generate_task = nano_zoo.search_tasks[nano_zoo.skills[0]]
    objectives = [Objective(task=generate_task, metric=nano_zoo.metric, limit=ITEMS),
                  Objective(task=ANSWER_TASK, metric="perplexity", direction="minimize", limit=ITEMS)]
    suite = TaskSuite.build(objectives, [str(nano_zoo.tasks_dir), str(loglikelihood_task)], seed=0)
    lm.greedy_tasks = suite.greedy_tasks
    expert = nano_zoo.experts[nano_zoo.skills[0]]
    lm.backend.swap_weights(expert)
    expected = suite.run(_resident(expert, tokenizer))
    got = suite.run(lm)
    assert got == pytest.approx(expected, rel=1e-5)
    assert got[f"{ANSWER_TASK}/perplexity"] > 1.0


def test_rolling_loglikelihood_and_echo_mode_equal_the_in_process_engine(vllm_server, nano_zoo):
    tokenizer = AutoTokenizer.from_pretrained(nano_zoo.base)
    texts = [(prompt + answer,) for prompt, answer in _pairs(nano_zoo)]
    pairs = _pairs(nano_zoo)
    resident = _resident(nano_zoo.base, tokenizer)
    lms = [make_server_lm(EngineOptions(engine="vllm", url=vllm_server.url, logprobs=mode), tokenizer)
           for mode in ("prompt_logprobs", "echo")]
    try:
        rolling = lms[0].loglikelihood_rolling(
            [Instance("loglikelihood_rolling", {}, t, i, ("r", i, 1)) for i, t in enumerate(texts)])
        by_prompt_logprobs, by_echo = (_loglikelihood(lm, pairs) for lm in lms)
    finally:
        for lm in lms:
            lm.close()
    expected = resident.loglikelihood_rolling(
        [Instance("loglikelihood_rolling", {}, t, i, ("r", i, 1)) for i, t in enumerate(texts)])
    assert rolling == pytest.approx(expected, abs=1e-4)
    assert [g for _, g in by_echo] == [g for _, g in by_prompt_logprobs]
    assert [lp for lp, _ in by_echo] == pytest.approx([lp for lp, _ in by_prompt_logprobs], abs=1e-5)
