"""How many candidates one evaluation pod takes: a batch where one process or one server start scores them all."""

from __future__ import annotations

import pytest

from evomerge.evaluate.placement import candidates_per_pod, swaps_in_pod
from evomerge.spec.merge_search import MergeSearchSpec
from tests.k8s.test_render_eval import lora_spec, spec


@pytest.mark.parametrize("search, per_pod", [
    (spec("transformers"), 4),
    (spec("vllm"), 4),
    (spec("tgi"), 1),  # no weight reload: one server start per candidate
    (spec("vllm", candidatesPerJob=7), 7),
    (spec("sglang"), 4),
])
def test_candidates_per_pod_follow_the_engines_weight_swap(search, per_pod):
    assert candidates_per_pod(search) == per_pod
    assert swaps_in_pod(search) == (search.evaluation.engine in ("vllm", "sglang"))


def test_lora_adapters_and_data_flow_paths_keep_one_candidate_per_vllm_pod():
    data_flow = MergeSearchSpec.model_validate({
        "experts": [{"name": "a", "uri": "pvc://models/a"}, {"name": "b", "uri": "pvc://other/b"}],
        "merge": {"dataFlow": {"enabled": True}}, "objectives": [{"task": "t"}], "evaluation": {"engine": "vllm"},
    })
    for search in (lora_spec("vllm"), data_flow):
        assert (candidates_per_pod(search), swaps_in_pod(search)) == (1, False)


def test_sglang_hosts_no_adapters_so_a_lora_search_swaps_merged_checkpoints():
    assert (candidates_per_pod(lora_spec("sglang")), swaps_in_pod(lora_spec("sglang"))) == (4, True)
