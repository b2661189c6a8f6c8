"""Which searches can serve their candidates as one combined LoRA adapter over the base (adapter.py writes it).

Kept free of torch: the operator renders evaluation pods from these rules and its image has no torch.
"""

from __future__ import annotations

from ..catalogue.methods import LOW_RANK_METHODS, METHODS
from ..spec.merge_search import MergeSearchSpec


def low_rank_refusal(method: str, normalize: bool | None, prefix: str = "") -> str | None:
    """Why `method` over LoRA experts is not one low-rank update, or None when it is.

    `normalize` is the recipe's or spec's setting (None: the method's default); `prefix` is where those
    fields live ("merge." in a spec), so the message names the field to change. Linear without normalize
    is refused here because evolved weights rarely sum to exactly 1 (a recipe that does is still accepted
    by `adapter_coefficients`).
    """
    if method not in LOW_RANK_METHODS:
        return (f"{prefix}method: {method} is not low-rank; only {' and '.join(LOW_RANK_METHODS)} make one combined "
                "adapter — merge full checkpoints instead")
    entry = METHODS[method]
    resolved = entry.normalize_default if normalize is None else normalize
    if not entry.needs_base and not resolved:
        return (f"{prefix}normalize: {method} without normalize scales the base by Σw, which is not a low-rank update — "
                "set normalize: true or use task_arithmetic")
    return None


def adapter_refusal(spec: MergeSearchSpec) -> str | None:
    """Why the search's candidates cannot be served as one combined adapter over its base, or None."""
    if spec.merge.data_flow.enabled:
        return "merge.dataFlow.enabled: a data-flow path runs whole layers, not an adapter over the base"
    if spec.base_model is None:
        return "baseModel: a combined adapter is served over the base model — set baseModel.uri"
    if not spec.experts:
        return "experts: none listed in the spec, so their formats are unknown"
    for i, expert in enumerate(spec.experts):
        if expert.format != "lora":
            return (f"experts[{i}].format: {expert.name!r} is a full checkpoint; a combined adapter needs every "
                    "expert as lora")
    return low_rank_refusal(spec.merge.method, spec.merge.normalize, "merge.")


def adapter_servable(spec: MergeSearchSpec) -> bool:
    """True when every candidate of the search is one LoRA adapter over spec.baseModel."""
    return adapter_refusal(spec) is None
