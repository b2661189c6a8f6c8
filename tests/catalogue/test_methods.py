"""The method catalogue says what mergekit 0.1.5 says, and every layer reads its names from it."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest

from evomerge.catalogue.methods import METHODS
from evomerge.merge import methods as math
from evomerge.spec.merge_search import MergeMethod


def test_every_catalogued_method_has_its_math_and_the_spec_offers_exactly_those():
    assert set(math.METHODS) == set(METHODS)
    assert all(math.METHODS[name].entry is METHODS[name] for name in METHODS)
    assert typing.get_args(MergeMethod) == tuple(METHODS)


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.task_arithmetic])
def test_task_arithmetic_entries_match_mergekits_registry(name):
    from mergekit.merge_methods import registry

    theirs = registry.get(METHODS[name].mergekit_name)
    ours = METHODS[name]
    assert (ours.normalize_default, ours.rescale_default) == (theirs.default_normalize, theirs.default_rescale)
    assert ours.consensus == (theirs.consensus_method is not None)
    assert ours.sparsifier == (theirs.sparsification_method.value if theirs.sparsification_method else None)
    parameters = {p.name: p for p in theirs.spec.parameters}
    for option in ours.options:
        assert option.name in parameters
        assert ours.default(option) == parameters[option.name].default
    assert set(ours.genes) <= set(parameters)


@pytest.mark.parametrize("name", list(METHODS))
def test_mergekit_knows_every_catalogued_name(name):
    from mergekit.merge_methods import registry

    assert registry.get(METHODS[name].mergekit_name) is not None


def test_the_catalogue_loads_without_torch():
    code = "import sys, evomerge.catalogue.methods, evomerge.spec.crd; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_only_a_mixing_method_has_mixture_weights():
    """A GA's default simplex follows this fact: linear mixes models, the rest scale task vectors (sums above one)."""
    assert [name for name, m in METHODS.items() if m.mixture_weights] == ["linear"]
    assert METHODS["linear"].normalize_default  # its weights are normalised to a mixture unless a recipe says not


def test_merge_bounds_has_one_field_per_declared_gene_with_its_default_box_and_meaning():
    from evomerge.catalogue.methods import GENE_DECLARATIONS
    from evomerge.spec.crd import render_crd
    from evomerge.spec.merge_search import Bounds

    assert tuple(Bounds.model_fields) == tuple(GENE_DECLARATIONS)
    assert Bounds().by_gene() == {name: gene.bounds for name, gene in GENE_DECLARATIONS.items()}
    crd = render_crd("MergeSearch")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    boxes = crd["properties"]["merge"]["properties"]["bounds"]["properties"]
    rules = {r["message"]: r["rule"] for r in crd["x-kubernetes-validations"]}
    for name, gene in GENE_DECLARATIONS.items():
        assert boxes[name]["description"] == gene.description
        assert f"merge.bounds.{name}: the low bound must be below the high bound" in rules
        if gene.domain is not None:
            assert f"self.merge.bounds.{name}[1]) <= {gene.domain[1]!r}" in rules[gene.domain_refusal(f"merge.bounds.{name}")]


@pytest.mark.parametrize("box", [["0", "0.5"], ["0.5", "1.5"]])
def test_a_box_outside_its_genes_domain_is_refused_naming_the_field(box):
    from pydantic import ValidationError

    from evomerge.spec.merge_search import MergeSpec

    with pytest.raises(ValidationError, match=r"bounds.density must lie within \(0, 1\]: density is the fraction of a task"):
        MergeSpec.model_validate({"method": "ties", "evolve": ["weight", "density"], "bounds": {"density": box}})
    assert MergeSpec.model_validate({"method": "ties", "bounds": {"density": ["0.05", "1"]}}).bounds.density == (0.05, 1.0)
