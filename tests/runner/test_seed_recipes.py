"""mergekit recipes listed in spec.search.seeds join the first population, matched to experts by URI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from evomerge.models.uris import PVC_MOUNT_ROOT_ENV
from evomerge.search.genome import genome_for
from evomerge.runner.seed_recipes import SeedRecipeError, seed_recipe_vectors
from evomerge.spec import MergeSearch
from evomerge.spec.loading import SpecError, validate_document
from evomerge.spec.merge_search import Bounds


def search_with(family, tasks, seeds, algorithm="random") -> MergeSearch:
    return MergeSearch.model_validate({
        "metadata": {"name": "seeded"},
        "spec": {
            "baseModel": {"uri": str(family["base"])},
            "experts": [{"name": "a", "uri": str(family["expert0"])}, {"name": "b", "uri": f"file://{family['expert1']}"}],
            "merge": {"method": "task_arithmetic", "granularity": "layerGroups", "layerGroups": 2},
            "search": {"algorithm": algorithm, "populationSize": 3, "maxGenerations": 1, "seeds": seeds},
            "objectives": [{"task": "tiny_colors"}],
            "evaluation": {"includePaths": [str(tasks)], "device": "cpu"},
        },
    })


def mergekit_config(family, wa: float, wb: float) -> dict:
    return {
        "merge_method": "task_arithmetic",
        "base_model": str(family["base"]),
        "models": [{"model": str(family["expert0"]), "parameters": {"weight": wa}},
                   {"model": str(family["expert1"]), "parameters": {"weight": wb}}],
    }


def test_inline_and_file_seeds_encode_into_the_genome(tiny_family, tiny_tasks, tmp_path):
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump(mergekit_config(tiny_family, 0.25, 0.5)))
    search = search_with(tiny_family, tiny_tasks, [{"mergekit": mergekit_config(tiny_family, 0.75, 0.1)}, {"uri": str(path)}])
    genome = genome_for(search.spec, num_layers=2)
    vectors = seed_recipe_vectors(search.spec, genome, num_layers=2)
    per_expert = len(genome.groups)
    assert vectors.shape == (2, genome.dim)
    np.testing.assert_allclose(vectors[0], [0.75] * per_expert + [0.1] * per_expert)
    np.testing.assert_allclose(vectors[1], [0.25] * per_expert + [0.5] * per_expert)


def test_seeds_are_the_first_candidates_of_a_run(tiny_family, tiny_tasks, tmp_path):
    from evomerge.runner.local import run_local

    search = search_with(tiny_family, tiny_tasks, [{"mergekit": mergekit_config(tiny_family, 0.75, 0.1)}])
    run_local(search, tmp_path / "run", export=False)
    first_ask = next(json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()
                     if json.loads(line)["type"] == "ask")
    assert any(np.allclose(v, [0.75] * 4 + [0.1] * 4) for v in first_ask["vectors"])


def test_a_seed_naming_a_foreign_model_is_refused_with_its_field(tiny_family, tiny_tasks, tmp_path):
    config = mergekit_config(tiny_family, 0.5, 0.5)
    config["models"][1]["model"] = str(tmp_path)
    search = search_with(tiny_family, tiny_tasks, [{"mergekit": config}])
    with pytest.raises(SeedRecipeError, match=r"spec.search.seeds\[0\]: model .* is not one of this search's experts"):
        seed_recipe_vectors(search.spec, genome_for(search.spec, 2), 2)


def test_a_seed_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of mergekit"):
        MergeSearch.model_validate({"metadata": {"name": "x"}, "spec": {
            "experts": [{"name": "a", "uri": "/a"}, {"name": "b", "uri": "/b"}], "merge": {"method": "linear"},
            "search": {"seeds": [{}]}, "objectives": [{"task": "t"}]}})


def test_a_seed_on_a_claim_is_read_where_the_claims_are_mounted(tiny_family, tiny_tasks, tmp_path, monkeypatch):
    monkeypatch.setenv(PVC_MOUNT_ROOT_ENV, str(tmp_path))
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "seed.yaml").write_text(yaml.safe_dump(mergekit_config(tiny_family, 0.3, 0.6)))
    search = search_with(tiny_family, tiny_tasks, [{"uri": "pvc://recipes/seed.yaml"}])

    vectors = seed_recipe_vectors(search.spec, genome_for(search.spec, 2), 2)

    np.testing.assert_allclose(vectors[0], [0.3] * 4 + [0.6] * 4)


def test_a_missing_seed_file_is_refused_with_its_field(tiny_family, tiny_tasks, tmp_path, monkeypatch):
    monkeypatch.setenv(PVC_MOUNT_ROOT_ENV, str(tmp_path))
    search = search_with(tiny_family, tiny_tasks, [{"mergekit": mergekit_config(tiny_family, 0.5, 0.5)},
                                                   {"uri": "pvc://recipes/absent.yaml"}])
    with pytest.raises(SeedRecipeError, match=r"spec.search.seeds\[1\]: 'pvc://recipes/absent.yaml': .* is not a file"):
        seed_recipe_vectors(search.spec, genome_for(search.spec, 2), 2)


@pytest.mark.parametrize("uri", ["hf://org/recipes/seed.yaml", "s3://bucket/seed.yaml"])
def test_a_remote_seed_is_refused_by_the_spec_with_its_field_and_the_fix(tiny_family, tiny_tasks, uri):
    document = search_with(tiny_family, tiny_tasks, []).model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["search"]["seeds"] = [{"mergekit": mergekit_config(tiny_family, 0.5, 0.5)}, {"uri": uri}]
    with pytest.raises(SpecError, match=r"spec.search.seeds\[1\]: uri: .*:// seeds are not fetched — put the YAML on a "
                                        r"volume claim \(pvc://claim/path\)"):
        validate_document(document, "seeded.yaml", MergeSearch)


def test_an_expert_a_seed_leaves_out_enters_at_its_low_bound(tiny_family, tiny_tasks):
    config = mergekit_config(tiny_family, 0.7, 0.0)
    del config["models"][1]  # mergekit merges only the models it is given
    search = search_with(tiny_family, tiny_tasks, [{"mergekit": config}])
    spec = search.spec.model_copy(update={"merge": search.spec.merge.model_copy(update={"bounds": Bounds(weight=(0.1, 1.0))})})

    vectors = seed_recipe_vectors(spec, genome_for(spec, 2), 2)

    np.testing.assert_allclose(vectors[0], [0.7] * 4 + [0.1] * 4)
