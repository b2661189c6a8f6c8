"""Fitness: weighted, signed so higher is better, perplexities on a log scale."""

from __future__ import annotations

import math

import pytest

from evomerge.evaluate.scoring import fitness, fitness_vector, normalised
from evomerge.spec.merge_search import Objective

ACC = Objective(task="arc", metric="acc", weight=3)
PPL = Objective(task="wiki", metric="word_perplexity", direction="minimize", weight=1)


def test_weighted_mean_of_normalised_metrics():
    scores = {"arc/acc": 0.5, "wiki/word_perplexity": 20.0}
    assert fitness([ACC, PPL], scores) == pytest.approx((3 * 0.5 - math.log(20.0)) / 4)
    assert fitness_vector([ACC, PPL], scores) == pytest.approx((0.5, -math.log(20.0)))


def test_lower_perplexity_is_better_and_halving_it_counts_the_same_at_any_level():
    assert normalised(PPL, 10.0) > normalised(PPL, 20.0)
    assert normalised(PPL, 10.0) - normalised(PPL, 20.0) == pytest.approx(normalised(PPL, 2.0) - normalised(PPL, 4.0))


def test_minimised_plain_metrics_are_negated():
    loss = Objective(task="t", metric="loss", direction="minimize")
    assert normalised(loss, 0.25) == -0.25


def test_a_non_positive_perplexity_is_an_error():
    with pytest.raises(ValueError, match="wiki/word_perplexity: a perplexity must be positive"):
        normalised(PPL, 0.0)
