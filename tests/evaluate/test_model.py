"""evaluate_model: one finished checkpoint, any engine, the search's tasks and subsample."""

from __future__ import annotations

import pytest

from evomerge.evaluate.engines.options import EngineOptions
from evomerge.evaluate.model import evaluate_model
from evomerge.spec.merge_search import Objective


def test_subsample_follows_the_seed_like_a_search(tiny_family, task_dir):
    objective = [Objective(task="tiny_next", metric="perplexity", direction="minimize", limit=3)]
    first, again, other = (evaluate_model(tiny_family["base"], objective, [str(task_dir)], seed=s) for s in (0, 0, 5))
    full = evaluate_model(tiny_family["base"], [Objective(task="tiny_next", metric="perplexity")], [str(task_dir)])
    assert first == again
    assert first != full and first != other


def test_engine_options_name_unknown_keys_and_missing_urls():
    with pytest.raises(ValueError, match="unknown key\\(s\\) urll — known: .*url"):
        EngineOptions.from_mapping({"engine": "tgi", "urll": "http://x"})
    with pytest.raises(ValueError, match="engine tgi scores through a server — give its URL"):
        EngineOptions.from_mapping({"engine": "tgi"})
    with pytest.raises(ValueError, match="'onnx' is not an engine"):
        EngineOptions.from_mapping({"engine": "onnx"})
