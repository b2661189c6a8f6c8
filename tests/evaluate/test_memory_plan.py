"""The evaluation worker's memory plan: from checkpoint sizes, where the bytes go and what does not fit, naming
the field to change — the numbers the README's memory table states for a 7B model on one 80 GB GPU."""

from __future__ import annotations

import math

import pytest
from safetensors import safe_open

from evomerge.evaluate.memory_plan import GiB, ModelSize, plan_memory, quantity_bytes
from evomerge.spec.merge_search import MergeSearchSpec

# Mistral-7B in bf16: 7.24e9 parameters; 32 layers, 8 KV heads of 128: 128 KiB of KV cache per token.
SEVEN_B = ModelSize(weight_bytes=14_483_464_192, kv_bytes_per_token=2 * 32 * 8 * 128 * 2, context=4096)


def spec(experts: int, engine: str = "transformers", **evaluation) -> MergeSearchSpec:
    return MergeSearchSpec.model_validate({
        "baseModel": {"uri": "pvc://models/base"},
        "experts": [{"name": f"e{i}", "uri": f"pvc://models/e{i}"} for i in range(experts)],
        "objectives": [{"task": "t"}],
        "evaluation": {"engine": engine, "device": "cuda", "gpuMemory": "80Gi", **evaluation},
    })


@pytest.mark.parametrize("quantity, expected", [("80Gi", 80 * GiB), ("64G", 64 * 10**9), ("1.5Gi", int(1.5 * GiB)), ("512", 512),
                                                ("1e9", 10**9), (2048, 2048), ("+4Ki", 4096)])
def test_quantities_are_read_as_kubernetes_writes_them(quantity, expected):
    assert quantity_bytes(quantity) == expected


def test_a_model_size_is_read_from_the_safetensors_headers(tiny_family):
    size = ModelSize.of(tiny_family["base"])

    stored = 0
    for path in tiny_family["base"].glob("*.safetensors"):
        with safe_open(str(path), "pt") as handle:
            stored += sum(handle.get_tensor(k).numel() * handle.get_tensor(k).element_size() for k in handle.keys())
    assert size.weight_bytes == stored and size.kv_bytes_per_token > 0


@pytest.mark.parametrize("experts, merge_on", [(2, "accelerator"), (3, "accelerator"), (4, "host"), (8, "host")])
def test_the_transformers_engine_keeps_a_7b_and_3_experts_on_one_80gb_gpu_and_merges_on_the_host_beyond(experts, merge_on):
    plan = plan_memory(spec(experts), SEVEN_B)

    assert plan.merge_on == merge_on and plan.problems == ()
    copies = (experts + 2) if merge_on == "accelerator" else 1  # base + task vectors + live merge, or the live merge alone
    assert plan.total("accelerator") == copies * SEVEN_B.weight_bytes


def test_vllm_needs_one_copy_and_its_kv_cache_on_the_gpu_whatever_the_number_of_experts():
    plan = plan_memory(spec(8, "vllm"), SEVEN_B)

    kv = SEVEN_B.kv_bytes_per_token * 4096 * 8  # batchSize 8 sequences of the context
    assert plan.total("accelerator") == SEVEN_B.weight_bytes + kv and plan.problems == ()
    assert plan.total("host") == (8 + 1 + 1) * SEVEN_B.weight_bytes  # base + task vectors, and the host copy it writes
    assert plan.total("volume") == 2 * SEVEN_B.weight_bytes  # the first candidate (a restarted server's) and the current


def test_what_does_not_fit_is_named_by_its_field_with_the_numbers():
    small_gpu = plan_memory(spec(3, "vllm", gpuMemory="16Gi"), SEVEN_B)
    (problem,) = small_gpu.problems
    assert problem.startswith("evaluation.gpuMemory: one evaluation worker needs 17.5 GiB") and "14.4 GiB" in problem

    low_limit = plan_memory(spec(3, "vllm", resources={"limits": {"memory": "64Gi"}}), SEVEN_B)
    (problem,) = low_limit.problems
    needed = 7 * SEVEN_B.weight_bytes  # base + 3 task vectors + host copy + two candidates on the memory volume
    assert problem.startswith(f"evaluation.resources.limits.memory: one evaluation worker holds {needed / GiB:.1f} GiB")
    assert f"at least {math.ceil(needed * 1.1 / GiB)}Gi" in problem


def test_without_a_declared_gpu_nothing_is_refused_but_the_host_limit():
    plan = plan_memory(spec(8, gpuMemory=None, device="cpu"), SEVEN_B)
    assert plan.problems == () and plan.total("accelerator") == 0
