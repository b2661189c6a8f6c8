"""Random search: the baseline — uniform in the box, the same candidates in any batching or mode."""

from __future__ import annotations

import numpy as np

from .problems import asked, drive, genome, optimizer, run_behaviour_checks


def test_deterministic_and_in_bounds():
    run_behaviour_checks("random")


def test_candidates_do_not_depend_on_batching_or_mode():
    batched = optimizer("random").ask(8)
    one_by_one = optimizer("random", mode="async")
    assert np.array_equal(batched, np.concatenate([one_by_one.ask(1) for _ in range(8)]))


def test_failures_are_ignored_and_seeds_come_first():
    g = genome(experts=4)
    seed = np.full(4, 0.5)
    opt = optimizer("random", g, seeds=seed[None, :])
    log = drive(opt, lambda x: None, 2)
    everything = asked(log)
    assert np.array_equal(everything[0], seed) and everything.shape == (16, 4)


def test_covers_the_box_uniformly():
    g = genome(experts=2, weight=(0.0, 2.0))
    rows = optimizer("random", g).ask(2000)
    assert np.allclose(rows.mean(axis=0), 1.0, atol=0.05) and rows.min() >= 0.0 and rows.max() <= 2.0
