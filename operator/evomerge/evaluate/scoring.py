"""From per-objective metrics to the fitness optimizers see."""

from __future__ import annotations

import math
from typing import Sequence

from ..spec.merge_search import Objective


def fitness(objectives: Sequence[Objective], scores: dict[str, float]) -> float:
    """Weighted mean of the objectives' normalised metrics: one number, higher is better."""
    total = sum(o.weight for o in objectives) or 1.0
    return sum(o.weight * normalised(o, scores[o.key]) for o in objectives) / total


def fitness_vector(objectives: Sequence[Objective], scores: dict[str, float]) -> tuple[float, ...]:
    """One normalised, maximised value per objective, for Pareto optimizers."""
    return tuple(normalised(o, scores[o.key]) for o in objectives)


def normalised(objective: Objective, value: float) -> float:
    """The metric on a scale where higher is better and objectives can be weighed against each other.

    Perplexities are unbounded and multiplicative (halving 20 is worth as much as halving 4), so they
    enter as their logarithm — the cross-entropy — which sits on the same few-units scale as accuracies.
    """
    if "perplexity" in objective.metric:
        if value <= 0:
            raise ValueError(f"objective {objective.key}: a perplexity must be positive, got {value}")
        value = math.log(value)
    return value if objective.direction == "maximize" else -value
