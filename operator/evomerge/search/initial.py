"""The known members a first population starts from: each expert dominant in turn, the uniform merge, seed recipes.

The seed GA recipe and EvoGM's initialisation (shared/reference/evogm.md §4, §10) both start from points a merge
practitioner would try first, not from random mixes alone: the task-biased members (member k gives expert k the
weight 1 and every other expert 0 in every layer group — each expert alone, EvoGM's one-hots) and the uniform
merge; the user's seed recipes (spec.search.seeds) join them, and each optimizer's own random draws fill the rest.
The GA, NSGA-II and CMA-ES (its first generation) build their first members here; EvoGM builds its one-hots per
round in its own basis from `dominant_weights`. Random search takes only the seed recipes: it is the baseline every
claim is measured against, so it stays uniform random.
"""

from __future__ import annotations

import numpy as np

from .genome import Genome


def dominant_weights(experts: int, groups: int) -> np.ndarray:
    """(experts, groups, experts): member k weighs expert k 1 and every other expert 0, in every layer group."""
    return np.tile(np.eye(experts)[:, None, :], (1, groups, 1))


def task_biased_rows(genome: Genome) -> np.ndarray:
    """One row per expert (genome units), that expert dominant: its weights 1 and the others' 0, each clipped into
    merge.bounds.weight; every other gene (density, t) at the centre of its box. No rows without evolved weights."""
    index = genome.param_index("weight")  # (groups, experts)
    if index is None:
        return np.zeros((0, genome.dim))
    experts = len(genome.experts)
    rows = np.tile(centre(genome), (experts, 1))
    rows[:, index] = dominant_weights(experts, index.shape[0])
    return genome.clip(rows)


def centre(genome: Genome) -> np.ndarray:
    """The middle of every gene's box: equal weights for all experts (the uniform merge of a box genome)."""
    return (genome.lower + genome.upper) / 2.0


def first_members(genome: Genome, seeds: np.ndarray, size: int, uniform: np.ndarray | None) -> np.ndarray:
    """The known members of a first population of `size`, in genome units and in EvoGM's order: the task-biased rows,
    the uniform merge (`uniform`, the optimizer's own: a softmax GA's is 1/N, a box's the centre; None: none), then
    the seeds. When they do not all fit, the seeds are kept first, then the uniform merge, then as many
    task-biased rows as room is left for."""
    kept = list(seeds)[:size]
    uniforms = [np.asarray(uniform, dtype=np.float64)] if uniform is not None and len(kept) < size else []
    biased = task_biased_rows(genome)[: size - len(kept) - len(uniforms)]
    return np.array([*biased, *uniforms, *kept], dtype=np.float64).reshape(-1, genome.dim)
