"""First members: each expert dominant in turn, the uniform merge and the seeds, as the GA recipe and EvoGM start."""

from __future__ import annotations

import numpy as np

from evomerge.search.initial import dominant_weights, first_members, task_biased_rows

from .problems import genome


def test_each_expert_is_dominant_in_turn_in_every_group_within_the_bounds():
    g = genome(experts=3, groups=("blocks0", "blocks1"), evolve=("weight", "density"), method="ties", weight=(0.0, 0.8))
    rows = task_biased_rows(g)
    weights, density = rows[:, g.param_index("weight")], rows[:, g.param_index("density")]
    assert np.array_equal(weights, 0.8 * dominant_weights(3, 2))  # expert k alone, its weight clipped to the bound
    assert np.allclose(density, 0.55)  # other genes at their box's centre (density in [0.2, 0.9])


def test_no_task_biased_members_without_evolved_weights():
    assert task_biased_rows(genome(experts=1, evolve=("t",), method="slerp")).shape == (0, 1)


def test_seeds_then_the_uniform_merge_are_kept_when_the_population_is_short_of_room():
    g = genome(experts=4)
    seeds = np.full((2, 4), 0.3)
    uniform = np.zeros(4)
    assert np.array_equal(first_members(g, seeds, 8, uniform), np.vstack([np.eye(4), uniform, seeds]))
    assert np.array_equal(first_members(g, seeds, 5, uniform), np.vstack([np.eye(4)[:2], uniform, seeds]))
    assert np.array_equal(first_members(g, seeds, 2, uniform), seeds)
    assert np.array_equal(first_members(g, np.zeros((0, 4)), 3, None), np.eye(4)[:3])
