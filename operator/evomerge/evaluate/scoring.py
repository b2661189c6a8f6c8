"""From per-objective metrics to the fitness optimizers see."""

from __future__ import annotations

from typing import Sequence

from ..spec.merge_search import Objective


def fitness(objectives: Sequence[Objective], scores: dict[str, float]) -> float:
    """Weighted mean of the objectives' metrics, signed so that higher is always better."""
    total = sum(o.weight for o in objectives) or 1.0
    return sum(o.weight * _signed(o, scores[o.key]) for o in objectives) / total


def fitness_vector(objectives: Sequence[Objective], scores: dict[str, float]) -> tuple[float, ...]:
    """One maximised value per objective, for Pareto optimizers."""
    return tuple(_signed(o, scores[o.key]) for o in objectives)


def _signed(objective: Objective, value: float) -> float:
    return value if objective.direction == "maximize" else -value
