"""SearchSpec: EvoGM's unset budget fields are the paper's, the other algorithms keep one long round; what an
algorithm cannot do is refused with the fields named."""

from __future__ import annotations

import pytest

from pydantic import ValidationError

from evomerge.catalogue.algorithms import ALGORITHMS, MODES
from evomerge.spec.crd import render_crd
from evomerge.spec.merge_search import MergeSearchSpec, SearchSpec

BUDGET = ("populationSize", "maxGenerations", "rounds")


def _budget(search: SearchSpec) -> tuple[int, int, int]:
    return search.population_size, search.max_generations, search.rounds


def test_evogm_left_unset_runs_the_papers_p20_t3_r2():
    assert _budget(SearchSpec()) == (20, 4, 2)
    assert _budget(SearchSpec.model_validate({"algorithm": "evogm"})) == (20, 4, 2)
    assert SearchSpec().population_size * SearchSpec().max_generations * SearchSpec().rounds == 160  # reference §5


@pytest.mark.parametrize("algorithm", ["cmaes", "ga", "random", "nsga2"])
def test_other_algorithms_left_unset_run_one_round_of_eight_generations_of_twenty(algorithm: str):
    """EvoGM's population and its 160 evaluations: at their defaults every optimizer spends the same budget, the one
    docs/benchmarks.md compares them at."""
    assert _budget(SearchSpec.model_validate({"algorithm": algorithm})) == (20, 8, 1)
    evogm = _budget(SearchSpec.model_validate({"algorithm": "evogm"}))
    assert evogm[0] * evogm[1] * evogm[2] == 20 * 8


def test_what_a_spec_sets_wins_under_either_spelling():
    assert _budget(SearchSpec.model_validate({"populationSize": 6, "rounds": 1})) == (6, 4, 1)
    assert _budget(SearchSpec(population_size=6, max_generations=3)) == (6, 3, 2)
    assert _budget(SearchSpec.model_validate({"algorithm": "cmaes", "maxGenerations": 3})) == (20, 3, 1)


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


@pytest.mark.parametrize("algorithm, mode", [(a.name, m) for a in ALGORITHMS.values() for m in MODES if m not in a.modes])
def test_a_mode_the_algorithm_cannot_run_is_refused_naming_both_fields(algorithm, mode):
    with pytest.raises(ValidationError, match=f"search.mode: {mode} .* search.algorithm {algorithm}"):
        SearchSpec.model_validate({"algorithm": algorithm, "mode": mode})


def test_cmaes_and_nsga2_are_generational_only():
    refused = {a.name for a in ALGORITHMS.values() if "async" not in a.modes}
    assert refused == {"cmaes", "nsga2"}


def test_evogm_per_iteration_generators_are_refused_in_async_mode():
    with pytest.raises(ValidationError, match="search.evogm.generatorReinit: perIteration needs search.mode: generational"):
        SearchSpec.model_validate({"mode": "async", "evogm": {"generatorReinit": "perIteration"}})
    assert SearchSpec.model_validate({"evogm": {"generatorReinit": "perIteration"}}).mode == "generational"


def test_an_algorithm_with_too_few_objectives_is_refused():
    spec = {"baseModel": {"uri": "b"}, "experts": [{"name": "a", "uri": "a"}, {"name": "b", "uri": "b"}],
            "search": {"algorithm": "nsga2"}, "objectives": [{"task": "t"}]}
    with pytest.raises(ValidationError, match="objectives: search.algorithm nsga2 searches a Pareto front and needs at least 2"):
        MergeSearchSpec.model_validate(spec)
    MergeSearchSpec.model_validate({**spec, "objectives": [{"task": "t"}, {"task": "u"}]})


@pytest.mark.parametrize("search, message", [
    ({"algorithm": "ga", "refine": {"evaluations": 160}}, r"refine.evaluations is 160, the budget 160"),
    ({"maxEvaluations": 40, "refine": {"evaluations": 45}}, r"refine.evaluations is 45, the budget 40"),
    ({"algorithm": "nsga2", "refine": {"evaluations": 2}}, r"search.refine: search.algorithm nsga2 searches a Pareto front"),
])
def test_a_refinement_must_leave_the_search_a_budget_and_have_one_fitness(search, message):
    with pytest.raises(ValueError, match=message):
        SearchSpec.model_validate(search)


def test_a_refinement_inside_the_budget_is_admitted_with_a_small_first_step():
    refine = SearchSpec.model_validate({"algorithm": "cmaes", "refine": {"evaluations": 20}}).refine
    assert refine is not None and refine.evaluations == 20 and refine.step_size == 0.05
