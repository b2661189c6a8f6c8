"""The SGLang engine against a look-alike of SGLang's documented native API (tests/support/fake_servers.FakeSGLang):
SGLang has no CPU build on PyPI, so the real server cannot run in this suite. Scores equal the in-process
engine's before and after an in-place weight swap, and a swap the server refuses says why."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from evomerge.evaluate.engines import make_server_lm
from evomerge.evaluate.engines.options import EngineOptions
from evomerge.evaluate.engines.transport import ServerError
from evomerge.evaluate.model import evaluate_model
from evomerge.evaluate.tasks import TaskSuite
from tests.evaluate.support import ALL_TYPES, FAST
from tests.support.fake_servers import FakeSGLang


def test_scores_follow_an_in_place_swap_to_another_checkpoint(tiny_family, task_dir):
    suite = TaskSuite.build(ALL_TYPES, [str(task_dir)])
    tokenizer = AutoTokenizer.from_pretrained(tiny_family["base"])
    with FakeSGLang(tiny_family["base"]) as server:
        lm = make_server_lm(EngineOptions(engine="sglang", url=server.url, **FAST), tokenizer, suite.greedy_tasks)
        before = suite.run(lm)
        lm.backend.swap_weights(tiny_family["expert1"])
        after = suite.run(lm)
        lm.close()
        assert "POST /update_weights_from_disk" in server.counters.paths
    for model_dir, got in ((tiny_family["base"], before), (tiny_family["expert1"], after)):
        expected = evaluate_model(model_dir, ALL_TYPES, [str(task_dir)])
        assert got == pytest.approx(expected, rel=1e-5), model_dir.name
    assert before != pytest.approx(after, rel=1e-5)


def test_a_refused_swap_fails_with_the_servers_message(tiny_family, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_family["base"])
    with FakeSGLang(tiny_family["base"]) as server:
        lm = make_server_lm(EngineOptions(engine="sglang", url=server.url, **FAST), tokenizer)
        with pytest.raises(ServerError, match="update_weights_from_disk failed .*no safetensors weights"):
            lm.backend.swap_weights(tmp_path)
        lm.close()
