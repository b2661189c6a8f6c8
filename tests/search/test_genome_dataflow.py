"""genome_for on a data-flow spec: the path genes it builds, decode to a layer path and encode back."""

from __future__ import annotations

import numpy as np
import pytest

from evomerge.merge.recipe import MergeRecipe
from evomerge.search.genome import PATH, genome_for
from evomerge.search.optimizer import make_optimizer
from evomerge.spec import MergeSearch

from .problems import drive, search


def dfs_spec(experts=("e0", "e1"), **data_flow) -> MergeSearch:
    return MergeSearch.model_validate({
        "metadata": {"name": "dfs"},
        "spec": {
            "experts": [{"name": n, "uri": f"file:///models/{n}"} for n in experts],
            "merge": {"dataFlow": {"enabled": True, "repeats": 2, **data_flow}},
            "objectives": [{"task": "t"}],
        },
    })


def test_a_data_flow_spec_evolves_the_path_alone():
    g = genome_for(dfs_spec(scaleBounds=["0.7", "1.5"]).spec, num_layers=3)
    slots = 2 * (3 + 3)  # repeats × (layers of e0 + layers of e1)
    assert g.dim == 2 * slots and all(gene.expert == PATH for gene in g.genes)
    assert g.param_index("weight") is None and g.params == ("indicator", "scale")
    assert {(x.low, x.high) for x in g.genes if x.param == "scale"} == {(0.7, 1.5)}
    recipe = g.decode(np.random.default_rng(1).uniform(g.lower, g.upper))
    assert recipe.layer_path.models == ("e0", "e1") and recipe.layer_path.sources == {}
    assert [(e.name, e.uri, e.params) for e in recipe.experts] == [("e0", "file:///models/e0", {}), ("e1", "file:///models/e1", {})]
    assert recipe.base_uri is None and recipe.options == {"dtype": "auto"}


def test_decode_then_encode_keeps_the_path():
    g = genome_for(dfs_spec().spec, num_layers=2)
    for seed in range(5):
        recipe = g.decode(np.random.default_rng(seed).uniform(g.lower, g.upper))
        again = g.decode(g.encode(MergeRecipe.from_dict(recipe.to_dict())))
        assert again.layer_path == recipe.layer_path and again.digest() == recipe.digest()


def test_without_evolved_scales_every_hop_has_scale_one():
    g = genome_for(dfs_spec(evolveScales=False).spec, num_layers=2)
    assert g.dim == 2 * 4 and g.params == ("indicator",)
    assert {h.scale for h in g.decode(g.upper).layer_path.hops} == {1.0}
    assert len(g.decode(g.upper).layer_path.hops) == 2 * 4 - 2  # every slot up to A's last layer of the last repeat


def test_model_a_leads_the_path_and_its_depth_must_be_known():
    spec = dfs_spec(experts=("e0",), modelA={"uri": "file:///merges/ps"}).spec
    with pytest.raises(ValueError, match="spec.merge.dataFlow.modelA: the depth of model A is unknown"):
        genome_for(spec, num_layers=2)
    g = genome_for(spec, num_layers=2, path_layers={"modelA": 3, "e0": 2})
    assert g.dim == 2 * 2 * (3 + 2)
    path = g.decode(g.upper).layer_path
    assert path.models == ("modelA", "e0") and path.sources == {"modelA": "file:///merges/ps"}
    assert (path.hops[0].model, path.hops[0].layer) == ("modelA", 0) and (path.hops[-1].model, path.hops[-1].layer) == ("modelA", 2)
    with pytest.raises(ValueError, match="path_layers: no depth for path model"):
        genome_for(spec, num_layers=2, path_layers={"modelA": 3})


def test_optimizers_search_a_pure_path_genome():
    g = genome_for(dfs_spec().spec, num_layers=2)
    for algorithm in ("random", "evogm", "ga", "cmaes"):
        opt = make_optimizer(g, search(algorithm))
        vectors = np.concatenate([v for v, _ in drive(opt, lambda x: float(np.sum(x[: g.dim // 2] > 0)), 2)])
        assert np.all(vectors >= g.lower) and np.all(vectors <= g.upper)
        assert len({g.decode(v).layer_path.hops for v in vectors}) > 1
