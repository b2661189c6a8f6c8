"""The engine catalogue: one entry per engine, and the spec, options and settings read their facts from it."""

from __future__ import annotations

from typing import get_args

import pytest

from evomerge.catalogue.engines import ENGINES, SERVED_ENGINES, EngineName, server_image
from evomerge.evaluate.engines.options import EngineOptions
from evomerge.k8s.settings import ClusterSettings
from evomerge.spec.merge_search import EvaluationSpec


def test_the_spec_accepts_exactly_the_catalogued_engines():
    assert set(get_args(EngineName)) == set(ENGINES)
    for name in ENGINES:
        assert EvaluationSpec(engine=name).engine == name
    with pytest.raises(ValueError, match="engine"):
        EvaluationSpec(engine="triton")


def test_a_served_engine_has_a_pinned_image_and_an_in_process_one_has_none():
    for name, entry in ENGINES.items():
        assert (entry.image is not None) == entry.served, name
        if entry.served:
            assert ":" in server_image(name) and not server_image(name).endswith(":latest")
    with pytest.raises(ValueError, match="runs in-process"):
        server_image("transformers")
    assert all(ClusterSettings().server_image(name) == server_image(name) for name in SERVED_ENGINES)


def test_an_engine_that_cannot_swap_weights_serves_one_candidate_per_start():
    for entry in ENGINES.values():
        assert entry.swaps_in_place or entry.candidates_per_start == 1, entry.name
    assert ENGINES["tgi"].candidates_per_start == 1 and ENGINES["vllm"].candidates_per_start is None


def test_served_engines_need_a_url_and_only_they_take_an_adapter():
    for name in SERVED_ENGINES:
        with pytest.raises(ValueError, match=f"engine {name} scores through a server"):
            EngineOptions(engine=name)
    with pytest.raises(ValueError, match="use engine tgi or vllm"):
        EngineOptions(engine="transformers", adapter="x")
    with pytest.raises(ValueError, match="use engine tgi or vllm"):
        EngineOptions(engine="sglang", url="http://127.0.0.1:1", adapter="x")  # its client scores merged checkpoints
