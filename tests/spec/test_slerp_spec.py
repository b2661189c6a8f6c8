"""slerp interpolates between the base and exactly one expert, listed or picked by expertSelector."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from evomerge.spec.merge_search import MergeSearchSpec


def spec(experts: int, **extra) -> dict:
    merge = {"method": "slerp", "evolve": ["t"], **extra.pop("merge", {})}
    return {"baseModel": {"uri": "/m/base"}, "objectives": [{"task": "t"}], "merge": merge,
            "experts": [{"name": f"e{i}", "uri": f"/m/e{i}"} for i in range(experts)], **extra}


def test_slerp_runs_with_one_listed_expert_or_a_selector():
    assert [e.name for e in MergeSearchSpec.model_validate(spec(1)).experts] == ["e0"]
    assert MergeSearchSpec.model_validate(spec(0, expertSelector={"matchLabels": {"family": "x"}})).expert_selector


@pytest.mark.parametrize("experts", [0, 2])
def test_slerp_with_another_number_of_experts_names_the_field_and_the_fix(experts):
    with pytest.raises(ValidationError, match=r"experts: slerp interpolates between baseModel and exactly one expert — list one"):
        MergeSearchSpec.model_validate(spec(experts))


def test_other_methods_still_need_two_experts():
    with pytest.raises(ValidationError, match="experts: list at least two experts"):
        MergeSearchSpec.model_validate({**spec(1), "merge": {"method": "task_arithmetic"}})


def test_a_path_search_reads_no_method_so_slerp_rules_do_not_apply_to_it():
    path = MergeSearchSpec.model_validate(spec(2, merge={"evolve": ["weight"], "dataFlow": {"enabled": True}}))
    assert path.merge.data_flow.enabled and len(path.experts) == 2
