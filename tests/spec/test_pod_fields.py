"""Pod fields in a spec are checked as the API server checks them in a pod: quantities and label values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from evomerge.spec.base import ResourceRequirements
from evomerge.spec.merge_search import EvaluationSpec


def test_quantities_are_int_or_string_as_in_a_pod():
    resources = ResourceRequirements.model_validate({"requests": {"cpu": "500m", "memory": "16Gi"}, "limits": {"nvidia.com/gpu": 1}})
    assert resources.to_wire() == {"requests": {"cpu": "500m", "memory": "16Gi"}, "limits": {"nvidia.com/gpu": 1}}


@pytest.mark.parametrize("value", ["lots", "-1", -1, "1.5 Gi"])
def test_what_is_no_quantity_is_refused_naming_the_fix(value):
    with pytest.raises(ValidationError, match=r"is not a Kubernetes quantity — write a count such as \"2\""):
        ResourceRequirements.model_validate({"limits": {"nvidia.com/gpu": value}})


def test_node_selector_values_are_label_values():
    assert EvaluationSpec.model_validate({"nodeSelector": {"pool": "a100.big_one"}}).node_selector == {"pool": "a100.big_one"}
    with pytest.raises(ValidationError, match="at most 63 characters"):
        EvaluationSpec.model_validate({"nodeSelector": {"pool": "x" * 64}})
