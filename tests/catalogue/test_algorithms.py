"""Each algorithm's options block is part of its catalogue entry: the spec adds it as search.<name>, and its
rules reach both pydantic and the CRD's CEL without the spec naming the algorithm."""

from __future__ import annotations

from string import Formatter

import pytest
from pydantic import ValidationError

from evomerge.catalogue.algorithms import ALGORITHMS, OPTIONS, AlgorithmOptions
from evomerge.spec import SearchSpec
from evomerge.spec.crd import render_crd

PLACEHOLDERS = {"options", "mode", "population_size"}  # what spec/crd.py fills into an OptionsRule's CEL


def test_the_spec_has_one_block_per_algorithm_with_options_named_for_it():
    blocks = {name: info.annotation for name, info in SearchSpec.model_fields.items()
              if isinstance(info.annotation, type) and issubclass(info.annotation, AlgorithmOptions)}
    assert blocks == OPTIONS
    assert set(OPTIONS) == {name for name, a in ALGORITHMS.items() if a.options is not None}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_rule_names_an_option_of_its_block_and_reads_only_what_the_crd_fills_in(name):
    options = OPTIONS[name]
    for rule in options.rules:
        assert rule.field in {info.alias for info in options.model_fields.values()}
        assert {field for _, field, _, _ in Formatter().parse(rule.cel) if field} <= PLACEHOLDERS


def test_every_rule_of_every_block_is_a_cel_rule_of_the_crd_at_its_option():
    spec = render_crd("MergeSearch")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    found = {(r.get("fieldPath"), r["message"]) for r in spec["x-kubernetes-validations"]}
    expected = {(f".search.{name}.{rule.field}", rule.message) for name, options in OPTIONS.items() for rule in options.rules}
    assert expected and expected <= found


def test_a_ga_tournament_larger_than_the_population_is_refused_naming_both_fields():
    with pytest.raises(ValidationError, match=r"search.ga.tournamentSize: 21 is more than populationSize \(20\)"):
        SearchSpec.model_validate({"algorithm": "ga", "ga": {"tournamentSize": 21}})  # the GA's default population
    assert SearchSpec.model_validate({"algorithm": "ga", "populationSize": 4, "ga": {"selection": "rank", "tournamentSize": 5}})
    assert SearchSpec.model_validate({"algorithm": "cmaes", "populationSize": 4, "ga": {"tournamentSize": 5}})  # not read
