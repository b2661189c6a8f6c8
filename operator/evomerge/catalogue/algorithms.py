"""Every search algorithm, declared once: the modes it runs in, what its fitness is, its budget defaults.

The spec's `search.algorithm` and `search.mode` values, its validators and CEL rules (so an impossible
combination is refused at admission), the README's defaults, the runner (how to drive an optimizer) and
the optimizer registry (which module implements it) all read these entries. Adding an algorithm is one
entry here plus its optimizer in `search/<module>.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["generational", "async"]
MODES: tuple[str, ...] = ("generational", "async")


@dataclass(frozen=True)
class Budget:
    """The budget shape a spec leaves unset: candidates per generation, generations per round, rounds."""

    population_size: int
    max_generations: int
    rounds: int

    def fields(self) -> dict[str, int]:
        """By the spec's field names (camelCase, as a manifest writes them)."""
        return {"populationSize": self.population_size, "maxGenerations": self.max_generations, "rounds": self.rounds}


# EvoGM's populationSize and its 160 evaluations, in one round: every algorithm left at its defaults spends the same
# budget, and is the configuration benchmarks/optimizers*.py (docs/benchmarks.md) compares them in.
ONE_LONG_ROUND = Budget(population_size=20, max_generations=8, rounds=1)


@dataclass(frozen=True)
class Algorithm:
    """One optimizer.

    `modes`: generational (ask a generation, wait for all of it) and, where the optimizer can propose one
    candidate at a time while others are evaluated, async. `multi_objective`: its fitness is one value per
    objective (a Pareto front), and it needs `min_objectives` of them. `module`: evomerge.search.<module>
    registers the optimizer, imported on demand so a build without one library still runs the others.
    """

    name: str
    module: str
    summary: str
    modes: tuple[Mode, ...] = ("generational",)
    multi_objective: bool = False
    min_objectives: int = 1
    budget: Budget = ONE_LONG_ROUND

    @property
    def supports_async(self) -> bool:
        return "async" in self.modes


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        # the paper's P = 20, T = 3 iterations (maxGenerations 1 + T) and R = 2 rounds (reference/evogm.md §5)
        Algorithm("evogm", "evogm", "learned generators of winners and losers, hosted by CMA-ES (evogm.variant), over "
                  "rounds of re-merged elites",
                  modes=("generational", "async"), budget=Budget(population_size=20, max_generations=4, rounds=2)),
        Algorithm("cmaes", "cmaes", "CMA-ES (the cmaes package)"),
        Algorithm("ga", "ga", "a genetic algorithm", modes=("generational", "async")),
        Algorithm("random", "random_search", "random search", modes=("generational", "async")),
        Algorithm("nsga2", "nsga2", "NSGA-II (pymoo), several objectives: a Pareto front", multi_objective=True,
                  min_objectives=2),
    )
}
ALGORITHM_NAMES = tuple(ALGORITHMS)
DEFAULT_ALGORITHM = "evogm"
ASYNC_ALGORITHMS = tuple(name for name, a in ALGORITHMS.items() if a.supports_async)


def budget_defaults(field: str) -> tuple[list[tuple[str, int]], int]:
    """A budget field's default per algorithm: [(algorithm, value)] where it differs, and everyone else's."""
    others = ONE_LONG_ROUND.fields()[field]
    special = [(a.name, value) for a in ALGORITHMS.values() if (value := a.budget.fields()[field]) != others]
    return special, others


def mode_refusal(algorithm: Algorithm, mode: str) -> str:
    """Why `algorithm` cannot run in `mode`, naming both fields and the ways out."""
    if mode == "async":
        return (f"search.mode: async asks one candidate at a time, and search.algorithm {algorithm.name} proposes whole "
                f"generations — use mode: generational, or one of {', '.join(ASYNC_ALGORITHMS)}")
    return f"search.mode: {algorithm.name} runs in {' or '.join(algorithm.modes)} mode only"


def objectives_refusal(algorithm: Algorithm) -> str:
    front = "searches a Pareto front and " if algorithm.multi_objective else ""
    return f"objectives: search.algorithm {algorithm.name} {front}needs at least {algorithm.min_objectives} objectives"
