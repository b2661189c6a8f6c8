"""Which engine a local run scores with: one vLLM server (tests/evaluate/engines/test_served.py, tests/cli/test_demo.py),
in-process for data-flow candidates, and a clear refusal for an engine with no server a local run can start."""

from __future__ import annotations

from pathlib import Path

import pytest

from evomerge.runner.local import evaluation_worker
from evomerge.spec import MergeSearch


def _search(engine: str, data_flow: bool = False) -> MergeSearch:
    return MergeSearch.model_validate({
        "metadata": {"name": "s"},
        "spec": {"baseModel": {"uri": "/m/base"}, "experts": [{"name": "a", "uri": "/m/a"}, {"name": "b", "uri": "/m/b"}],
                 "merge": {"dataFlow": {"enabled": data_flow}}, "objectives": [{"task": "t"}],
                 "evaluation": {"engine": engine}},
    })


def test_tgi_is_refused_locally_with_the_engines_that_work(tmp_path: Path):
    with pytest.raises(ValueError, match="spec.evaluation.engine: tgi has no server a local run can start.*set engine: transformers or vllm"):
        with evaluation_worker(_search("tgi").spec, tmp_path):
            pass


@pytest.mark.parametrize("engine", ["transformers", "vllm"])
def test_data_flow_and_in_process_searches_start_no_server(engine: str, tmp_path: Path):
    with evaluation_worker(_search(engine, data_flow=engine == "vllm").spec, tmp_path) as worker:
        assert worker is None
    assert not any(tmp_path.iterdir())
