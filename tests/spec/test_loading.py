"""A user's YAML mistakes must come back as one line per problem, naming the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evomerge.spec import MergeSearch, SpecError, load_resource, validate_document

GOOD = {
    "apiVersion": "evomerge.dev/v1alpha1",
    "kind": "MergeSearch",
    "metadata": {"name": "jp-math"},
    "spec": {
        "baseModel": {"uri": "hf://mistralai/Mistral-7B-v0.1"},
        "experts": [{"name": "shisa", "uri": "hf://augmxnt/shisa-gamma-7b-v1"}, {"name": "abel", "uri": "pvc://models/abel"}],
        "merge": {"method": "dare_ties", "granularity": "layerGroups", "layerGroups": 4, "evolve": ["weight", "density"]},
        "search": {"algorithm": "evogm", "populationSize": 20, "maxGenerations": 30, "rounds": 2, "seed": 1,
                   "earlyStopping": {"patience": 5, "minDelta": "0.002"}, "maxEvaluations": 400},
        "objectives": [{"task": "gsm8k_ja", "metric": "acc", "weight": "1", "limit": 200}],
    },
}


def problems_of(document: dict) -> list[str]:
    with pytest.raises(SpecError) as info:
        validate_document(document, "test.yaml", MergeSearch)
    return info.value.problems


def with_spec(**changes) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    doc["spec"].update(changes)
    return doc


def test_design_example_is_valid_and_floats_read_as_numbers():
    search = validate_document(GOOD, "test.yaml", MergeSearch)
    assert search.spec.search.early_stopping.min_delta == pytest.approx(0.002)
    assert search.spec.objectives[0].weight == 1.0
    assert search.to_wire()["spec"]["search"]["earlyStopping"]["minDelta"] == "0.002"


def test_unknown_method_lists_the_known_ones():
    [problem] = problems_of(with_spec(merge={"method": "tiez"}))
    assert problem.startswith("spec.merge.method:") and "'ties'" in problem and "'tiez'" in problem


def test_negative_population_names_the_field_and_the_bound():
    [problem] = problems_of(with_spec(search={"populationSize": -3}))
    assert problem.startswith("spec.search.populationSize:") and "greater than or equal to 2" in problem


def test_missing_task_is_named():
    [problem] = problems_of(with_spec(objectives=[{"metric": "acc"}]))
    assert problem == "spec.objectives[0].task: required field is missing — add it"


def test_duplicate_expert_names_are_rejected():
    experts = [{"name": "a", "uri": "/x"}, {"name": "a", "uri": "/y"}]
    [problem] = problems_of(with_spec(experts=experts))
    assert "duplicate name(s) a" in problem


def test_typo_gets_a_did_you_mean():
    [problem] = problems_of(with_spec(search={"populatonSize": 4}))
    assert problem == "spec.search.populatonSize: unknown field — did you mean 'populationSize'?"


def test_density_with_a_method_without_sparsifier_is_explained():
    [problem] = problems_of(with_spec(merge={"method": "task_arithmetic", "evolve": ["weight", "density"]}))
    assert "merge.evolve: method task_arithmetic evolves weight only" in problem
    assert "density applies to ties, dare_ties, dare_linear, breadcrumbs" in problem


def test_task_vector_methods_need_a_base_model():
    doc = with_spec()
    del doc["spec"]["baseModel"]
    [problem] = problems_of(doc)
    assert "baseModel" in problem and "needs baseModel.uri" in problem


def test_a_single_expert_without_selector_is_rejected():
    [problem] = problems_of(with_spec(experts=[{"name": "a", "uri": "/x"}]))
    assert "at least two experts" in problem


def test_non_numeric_string_number_is_rejected():
    [problem] = problems_of(with_spec(objectives=[{"task": "t", "weight": "heavy"}]))
    assert problem.startswith("spec.objectives[0].weight:") and "not a number" in problem


def test_nsga2_needs_two_objectives():
    [problem] = problems_of(with_spec(search={"algorithm": "nsga2"}))
    assert "search.algorithm nsga2" in problem and "at least 2 objectives" in problem


def test_bare_spec_file_is_named_after_the_file(tmp_path: Path):
    path = tmp_path / "My Search.yaml"
    path.write_text(yaml.safe_dump(GOOD["spec"]))
    search = load_resource(path, MergeSearch)
    assert search.metadata.name == "my-search"


def test_yaml_syntax_errors_are_reported(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("spec: [unclosed")
    with pytest.raises(SpecError) as info:
        load_resource(path, MergeSearch)
    assert "not valid YAML" in info.value.problems[0]
