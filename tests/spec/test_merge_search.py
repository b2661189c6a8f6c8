"""SearchSpec's budget shape: EvoGM's unset fields are the paper's, the other algorithms keep one long round."""

from __future__ import annotations

import pytest

from evomerge.spec.crd import render_crd
from evomerge.spec.merge_search import SearchSpec

BUDGET = ("populationSize", "maxGenerations", "rounds")


def _budget(search: SearchSpec) -> tuple[int, int, int]:
    return search.population_size, search.max_generations, search.rounds


def test_evogm_left_unset_runs_the_papers_p20_t3_r2():
    assert _budget(SearchSpec()) == (20, 4, 2)
    assert _budget(SearchSpec.model_validate({"algorithm": "evogm"})) == (20, 4, 2)
    assert SearchSpec().population_size * SearchSpec().max_generations * SearchSpec().rounds == 160  # reference §5


@pytest.mark.parametrize("algorithm", ["cmaes", "ga", "random", "nsga2"])
def test_other_algorithms_left_unset_run_one_round_of_ten_generations_of_eight(algorithm: str):
    assert _budget(SearchSpec.model_validate({"algorithm": algorithm})) == (8, 10, 1)


def test_what_a_spec_sets_wins_under_either_spelling():
    assert _budget(SearchSpec.model_validate({"populationSize": 6, "rounds": 1})) == (6, 4, 1)
    assert _budget(SearchSpec(population_size=6, max_generations=3)) == (6, 3, 2)
    assert _budget(SearchSpec.model_validate({"algorithm": "cmaes", "maxGenerations": 3})) == (8, 3, 1)


def test_the_crd_leaves_the_budget_unset_so_admission_does_not_pick_one_algorithms_default():
    schema = render_crd("MergeSearch")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    search = schema["properties"]["spec"]["properties"]["search"]["properties"]
    for field in BUDGET:
        assert "default" not in search[field], field
        assert search[field]["type"] == "integer"
    assert search["algorithm"]["default"] == "evogm"


def test_an_effective_spec_written_back_keeps_its_budget():
    search = SearchSpec.model_validate({"algorithm": "evogm"})
    again = SearchSpec.model_validate({**search.to_wire(), "algorithm": "evogm"})
    assert _budget(again) == (20, 4, 2)
    switched = SearchSpec.model_validate({**search.to_wire(), "algorithm": "cmaes"})
    assert _budget(switched) == (20, 4, 2)  # written out, the values are the spec's own
