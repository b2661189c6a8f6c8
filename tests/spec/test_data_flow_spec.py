"""merge.dataFlow in a MergeSearch spec: what it needs, and the errors that name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from evomerge.spec import MergeSearch, load_resource
from evomerge.spec.merge_search import path_models


def spec(experts=({"name": "a", "uri": "/m/a"},), **data_flow) -> dict:
    return {
        "metadata": {"name": "dfs"},
        "spec": {"experts": list(experts), "merge": {"dataFlow": {"enabled": True, **data_flow}}, "objectives": [{"task": "t"}]},
    }


def test_a_data_flow_search_needs_no_base_model_and_orders_model_a_first():
    one = MergeSearch.model_validate(spec())
    assert one.spec.base_model is None and path_models(one.spec) == [("a", "/m/a")]
    hybrid = MergeSearch.model_validate(spec(experts=[{"name": "a", "uri": "/m/a"}, {"name": "b", "uri": "/m/b"}],
                                             modelA={"uri": "file:///merges/ps"}))
    assert path_models(hybrid.spec) == [("modelA", "file:///merges/ps"), ("a", "/m/a"), ("b", "/m/b")]
    assert MergeSearch.model_validate(spec(experts=[], modelA={"uri": "/m/ps"})).spec.merge.data_flow.model_a.uri == "/m/ps"


@pytest.mark.parametrize("document, message", [
    (spec(scaleBounds=["0", "2"]), r"merge.dataFlow.scaleBounds: \[0.0, 2.0\] must be positive and ordered"),
    (spec(scaleBounds=["1.5", "1.2"]), "merge.dataFlow.scaleBounds"),
    (spec(experts=[]), "merge.dataFlow: a data-flow path needs a model — list experts, or set merge.dataFlow.modelA"),
    (spec(experts=[{"name": "a", "uri": "/m/a", "format": "lora"}]), r"experts\[0\].format: lora — a data-flow path runs whole layers"),
    (spec(experts=[{"name": "modelA", "uri": "/m/a"}], modelA={"uri": "/m/ps"}), r"experts\[0\].name: 'modelA' is the path's name"),
])
def test_bad_data_flow_specs_name_the_field(document, message):
    with pytest.raises(ValidationError, match=message):
        MergeSearch.model_validate(document)


def test_a_parameter_space_search_still_needs_its_base():
    document = spec()
    document["spec"]["merge"]["dataFlow"]["enabled"] = False
    document["spec"]["experts"].append({"name": "b", "uri": "/m/b"})
    with pytest.raises(ValidationError, match="baseModel: merge.method 'task_arithmetic' merges task vectors"):
        MergeSearch.model_validate(document)


def test_the_data_flow_example_is_a_valid_search():
    example = load_resource(Path(__file__).parents[2] / "examples" / "dataflow-search.yaml", MergeSearch)
    flow = example.spec.merge.data_flow
    assert flow.enabled and flow.model_a is not None and [name for name, _ in path_models(example.spec)] == ["modelA", "abel"]
