"""The genome: vector ↔ recipe in both directions, bounds, and the transforms optimizers search in."""

from __future__ import annotations

import numpy as np
import pytest

from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.merge.layer_path import Hop, LayerPath
from evomerge.search.genome import PATH, BoxTransform, Genome, PathGenes, SoftmaxTransform
from evomerge.search.optimizer import make_optimizer

from .problems import drive, genome, search

GROUPS = ("embed", "blocks0", "blocks1", "head")


def test_genes_are_expert_by_parameter_by_group():
    g = genome(experts=2, groups=GROUPS, evolve=("weight", "density"), method="ties")
    assert g.dim == 2 * 2 * 4
    assert [(x.expert, x.param, x.group) for x in g.genes[:5]] == [
        ("e0", "weight", "embed"), ("e0", "weight", "blocks0"), ("e0", "weight", "blocks1"), ("e0", "weight", "head"),
        ("e0", "density", "embed"),
    ]
    index = g.param_index("weight")
    assert index.shape == (4, 2) and [g.genes[i].expert for i in index[1]] == ["e0", "e1"]
    assert g.param_index("t") is None and g.params == ("weight", "density")


def test_decode_then_encode_is_the_identity():
    g = genome(experts=3, groups=GROUPS, evolve=("weight", "density"), method="ties")
    vector = np.random.default_rng(0).uniform(g.lower, g.upper)
    recipe = g.decode(vector)
    assert recipe.method == "ties" and recipe.groups == GROUPS
    assert recipe.experts[1].params["density"]["blocks1"] == vector[g.genes.index(next(x for x in g.genes if (x.expert, x.param, x.group) == ("e1", "density", "blocks1")))]
    assert np.array_equal(g.encode(recipe), vector)
    assert np.array_equal(g.encode(MergeRecipe.from_dict(recipe.to_dict())), vector)


def test_encode_seeds_from_a_coarser_recipe():
    g = genome(experts=2, groups=GROUPS, weight=(0.0, 1.0))
    recipe = MergeRecipe("task_arithmetic", "file:///base", (
        ExpertWeights("e0", "file:///e0", {"weight": {"all": 0.3}}),
        ExpertWeights("e1", "file:///e1", {"weight": {"all": 0.6, "head": 0.1}}),
    ))
    assert np.allclose(g.encode(recipe), [0.3] * 4 + [0.6, 0.6, 0.6, 0.1])


def test_encode_names_what_is_missing_or_out_of_bounds():
    g = genome(experts=2, evolve=("weight", "density"), method="ties", weight=(0.0, 1.0))
    lacking = MergeRecipe("ties", None, (ExpertWeights("e0", "u", {"weight": {"all": 0.5}}),))
    with pytest.raises(ValueError, match="lacks expert"):
        g.encode(lacking)
    no_density = MergeRecipe("ties", None, tuple(ExpertWeights(f"e{i}", "u", {"weight": {"all": 0.5}}) for i in range(2)))
    with pytest.raises(ValueError, match="'e0' has no 'density'"):
        g.encode(no_density)
    too_big = MergeRecipe("ties", None, tuple(
        ExpertWeights(f"e{i}", "u", {"weight": {"all": 1.5}, "density": {"all": 0.5}}) for i in range(2)))
    with pytest.raises(ValueError, match=r"weight\[all\] = 1.5 lies outside its bounds"):
        g.encode(too_big)
    assert np.allclose(g.encode(too_big, clip=True), [1.0, 0.5, 1.0, 0.5])


def test_decode_rejects_the_wrong_length():
    with pytest.raises(ValueError, match="4 genes"):
        genome(experts=4).decode(np.zeros(3))


def test_box_transform_maps_the_unit_cube_onto_the_bounds():
    g = genome(experts=2, evolve=("weight", "density"), method="ties", weight=(-1.0, 3.0))
    box = BoxTransform(g)
    assert np.allclose(box.decode(np.array([0.0, 1.0, 0.5, 0.25])), [-1.0, 0.9, 1.0, 0.375])
    x = np.array([0.2, 0.3, -0.4, 0.8])
    assert np.allclose(box.decode(box.encode(x)), x)
    assert np.array_equal(box.decode(np.array([-1.0, 2.0, 0.5, 0.5]))[:2], [-1.0, 0.9])  # clipped into the box


def test_softmax_transform_gives_convex_weights_per_group():
    g = genome(experts=3, groups=GROUPS, evolve=("weight", "density"), method="ties", weight=(0.0, 1.0))
    soft = SoftmaxTransform(g)
    z = np.random.default_rng(1).normal(0, 2, g.dim)
    x = soft.decode(z)
    weights = x[g.param_index("weight")]
    assert np.all(weights > 0) and np.allclose(weights.sum(axis=1), 1.0)
    others = np.setdiff1d(np.arange(g.dim), g.param_index("weight").ravel())
    assert np.all(x[others] >= 0.2) and np.all(x[others] <= 0.9)
    repaired = soft.repair(z)
    assert np.allclose(repaired[g.param_index("weight")].mean(axis=1), 0.0)  # softmax ignores a shift: re-centred
    assert np.allclose(soft.decode(repaired), soft.decode(np.where(np.isin(np.arange(g.dim), others), np.clip(z, 0, 1), z)))
    assert np.allclose(soft.decode(soft.encode(x)), x)


def test_softmax_transform_needs_weights():
    with pytest.raises(ValueError, match="'weight' in merge.evolve"):
        SoftmaxTransform(genome(experts=1, evolve=("t",), method="slerp"))


def path_genome(evolve_scales: bool = True) -> Genome:
    return Genome.build(
        "task_arithmetic", "file:///base", [("e0", "file:///e0"), ("e1", "file:///e1")], ("all",), ["weight"],
        {"weight": (0.0, 1.0)}, {}, path=PathGenes(("e0", "e1"), (2, 2), repeats=2, evolve_scales=evolve_scales),
    )


def test_data_flow_genes_decode_to_a_layer_path():
    g = path_genome()
    assert g.dim == 2 + 2 * 8  # weights, then an indicator and a scale per slot of 2 repeats × (2 + 2) layers
    assert all(gene.expert == PATH for gene in g.genes[2:]) and g.param_index("weight").shape == (1, 2)
    indicator = [1, -1, 1, 1, -1, 1, 1, -1]  # slots: e0.0 e0.1 e1.0 e1.1 | e0.0 e0.1 e1.0 e1.1
    scales = [1.0, 1.0, 0.8, 1.2, 1.0, 1.5, 1.0, 1.0]
    recipe = g.decode(np.array([0.3, 0.7] + indicator + scales))
    assert [(h.model, h.layer, h.scale) for h in recipe.layer_path.hops] == [
        ("e0", 0, 1.0), ("e1", 0, 0.8), ("e1", 1, 1.2), ("e0", 1, 1.5),  # ends at A's last layer, 2nd repeat
    ]
    assert recipe.experts[0].params == {"weight": {"all": 0.3}}


def test_data_flow_genes_encode_a_recipe_path_back():
    g = path_genome()
    path = LayerPath(("e0", "e1"), (Hop("e0", 0), Hop("e1", 1, 0.9), Hop("e0", 0, 1.1), Hop("e0", 1)))
    recipe = g.decode(np.zeros(g.dim) + 0.5)
    seeded = type(recipe)(recipe.method, recipe.base_uri, recipe.experts, recipe.groups, recipe.options, path)
    assert g.decode(g.encode(seeded)).layer_path == path
    plain = path_genome(evolve_scales=False)
    assert plain.dim == 2 + 8 and plain.decode(plain.encode(seeded)).layer_path.hops[1].scale == 1.0
    with pytest.raises(ValueError, match="no layerPath"):
        g.encode(recipe.__class__(recipe.method, recipe.base_uri, recipe.experts))
    misfit = LayerPath(("e0", "e1"), (Hop("e0", 0), Hop("e1", 1), Hop("e1", 0), Hop("e1", 1), Hop("e1", 0), Hop("e0", 1)))
    with pytest.raises(ValueError, match="does not fit 2 repeats"):
        g.encode(type(recipe)(recipe.method, recipe.base_uri, recipe.experts, recipe.groups, recipe.options, misfit))


def test_optimizers_search_data_flow_genes_inside_their_bounds():
    g = path_genome()
    for algorithm in ("evogm", "ga", "cmaes"):
        opt = make_optimizer(g, search(algorithm))
        vectors = np.concatenate([v for v, _ in drive(opt, lambda x: -float(np.sum(x**2)), 3)])
        assert np.all(vectors >= g.lower) and np.all(vectors <= g.upper)
        assert all(g.decode(v).layer_path.hops for v in vectors)
