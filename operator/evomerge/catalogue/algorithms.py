"""Every search algorithm, declared once: the modes it runs in, what its fitness is, its budget defaults, and
its own options block (`search.<name>`) with the rules that tie those options to the rest of the search.

The spec's `search.algorithm` and `search.mode` values, its `search.<name>` blocks, its validators and CEL
rules (so an impossible combination is refused at admission), the README's defaults, the runner (how to
drive an optimizer) and the optimizer registry (which module implements it) all read these entries. Adding
an algorithm is one entry here (and its options class, if it has options) plus its optimizer in
`search/<module>.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, Protocol

from pydantic import Field

from .methods import METHODS, MIXTURE_METHODS
from .wire import Number, SpecModel

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


class SearchShape(Protocol):
    """What an options block's rules read of the search around it (the spec's SearchSpec has these fields)."""

    mode: str
    population_size: int


@dataclass(frozen=True)
class OptionsRule:
    """One admission rule of an options block, as the API server checks it: `cel` holds for a valid spec, with
    `{options}` standing for the block, `{mode}` and `{population_size}` for the search's values (the
    algorithm's defaults where unset). The spec applies it only when the block's algorithm runs."""

    field: str
    """The option the rule is about (camelCase): where kubectl points."""
    cel: str
    message: str


class AlgorithmOptions(SpecModel):
    """An algorithm's own options block, `search.<name>`: its fields, and the rules tying them to the search."""

    rules: ClassVar[tuple[OptionsRule, ...]] = ()
    """The CEL form of `refusal`, so the API server refuses what pydantic does."""

    def refusal(self, search: SearchShape) -> str | None:
        """Why these options cannot run in `search`, naming the fields and the fix; None when they can."""
        return None


EVOGM_REINIT_ASYNC = ("search.evogm.generatorReinit: perIteration needs search.mode: generational — the async mode "
                      "trains warm-started generators continuously; use perRound")


class EvoGMOptions(AlgorithmOptions):
    """EvoGM hyper-parameters; the generators' defaults are the released code's (shared/reference/evogm.md §5).

    A round is populationSize initial candidates (each current expert alone, their uniform mix, random mixes)
    then maxGenerations − 1 iterations of populationSize offspring; search.rounds rounds in all. The default
    variant, cmaHosted, lets CMA-ES propose and G+ rewrite a share of each generation (benchmarks/optimizers.py
    compares it with the released algorithm, variant paper); CMA-ES's samples take the random mixes' place, and its
    later rounds start from the elites instead of evaluating them again, so they have maxGenerations generations of
    CMA-ES.
    """

    variant: Literal["cmaHosted", "paper"] = Field(
        default="cmaHosted",
        description="cmaHosted: CMA-ES owns the proposal distribution (mean, step size, covariance) and G+ rewrites a share "
        "of each generation, so the proposal scale follows the remaining distance; paper: the released algorithm, "
        "G+(population) alone, whose proposals contract onto the winners within a round.",
    )
    winner_portion: Number = Field(default=0.3, gt=0, lt=1, description="Fraction ρ of the round's results that are winners (the rest are losers).")
    hidden_dims: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [128, 256, 256, 256, 128], min_length=1, description="Hidden layer widths of both generator MLPs.")
    learning_rate: Number = Field(default=1e-4, gt=0, description="Adam learning rate of the generators.")
    training_steps: int = Field(default=200, ge=1, description="Adam steps per iteration (per populationSize results in async mode).")
    cycle_scale: Number = Field(default=100.0, ge=0, description="Weight of the cycle-consistency loss.")
    opt_scale: Number = Field(default=1.0, ge=0, description="Weight of the loss pulling G+(losers) towards the winners' mean.")
    top_k: int | None = Field(default=None, ge=1, description="Elites promoted to experts of the next round; unset: the number of experts.")
    generator_mode: Literal["dual", "single"] = Field(default="dual", description="dual: G+ and G- with the cycle loss; single: G+ alone (ablation).")
    generator_reinit: Literal["perRound", "perIteration"] = Field(
        default="perRound", description="When the generators restart from fresh weights; perIteration needs mode generational."
    )
    injection: Number = Field(
        default=0.2, ge=0, le=1,
        description="cmaHosted: share of each CMA-ES generation that G+ rewrites (its offspring of CMA-ES's samples, told "
        "to CMA-ES clipped in Mahalanobis norm). 0.2 was chosen on tuning seeds apart from the reported ones "
        "(benchmarks/optimizers.py).",
    )
    sigma0: Number = Field(
        default=0.15, gt=0, le=1,
        description="cmaHosted: CMA-ES's first step size, in the round coordinates [-1, 1] (0.15: 7.5 % of their width, "
        "chosen on tuning seeds; the cmaes algorithm's default 1/6 of the box is 1/3 here).",
    )
    restart_sigma: Number | None = Field(
        default=None, gt=0, le=1,
        description="cmaHosted: restart CMA-ES at the best elite with this step size (in the first round's coordinates) "
        "at each later round; unset: CMA-ES carries on across rounds and only the generators restart.",
    )
    jitter: Number = Field(
        default=0.0, ge=0, le=1,
        description="σ of Gaussian noise added to each offspring, in the per-round coordinates [-1, 1] (0: the released code). "
        "Counters the offspring collapsing onto the winners' mean; 0.15 is the GA's mutation size relative to the range.",
    )

    rules: ClassVar[tuple[OptionsRule, ...]] = (OptionsRule(
        "generatorReinit",
        "!has({options}.generatorReinit) || {options}.generatorReinit != 'perIteration' || {mode} != 'async'",
        EVOGM_REINIT_ASYNC,
    ),)

    def refusal(self, search: SearchShape) -> str | None:
        return EVOGM_REINIT_ASYNC if search.mode == "async" and self.generator_reinit == "perIteration" else None


class CMAESOptions(AlgorithmOptions):
    """CMA-ES (the `cmaes` package) in the unit cube mapped onto each gene's bounds; Sakana's start by default."""

    sigma0: Number = Field(default=1 / 6, gt=0, description="Initial step size, as a fraction of each gene's bounds.")
    mean0: Number = Field(default=0.5, ge=0, le=1, description="Start of the search, as a fraction of each gene's bounds.")


class GAOptions(AlgorithmOptions):
    """The GA recipe (shared/reference/evogm.md §10)."""

    selection: Literal["tournament", "rank"] = Field(default="tournament", description="How parents are drawn from the parent pool.")
    survivor_fraction: Number = Field(default=0.25, gt=0, le=1, description="Top fraction of the population kept as the parent pool.")
    elitism: int = Field(default=1, ge=0, description="Best members carried unchanged into the next generation.")
    crossover: Literal["uniform", "blend"] = Field(default="uniform", description="uniform: each gene from either parent; blend: BLX-0.5.")
    crossover_rate: Number = Field(default=0.9, ge=0, le=1, description="Probability that a child is a crossover of two parents.")
    mutation_sigma: Number = Field(default=0.07, ge=0, description="Gaussian mutation σ, in logits (softmax weights) or fractions of a gene's bounds.")
    mutation_rate: Number = Field(default=1.0, ge=0, le=1, description="Probability that each gene of a child is mutated.")
    tournament_size: int = Field(default=3, ge=2)
    """Members drawn per tournament; at most populationSize."""
    softmax_weights: bool | None = Field(
        default=None,
        description="Normalise weights per layer group with a softmax (positive, summing to one); false: a box over "
        f"merge.bounds.weight. Unset: true for {', '.join(MIXTURE_METHODS)} (weights that mix the models), false for "
        "the others (weights that scale task vectors, whose best merges sum above one).",
    )

    def softmax_for(self, method: str) -> bool:
        """softmaxWeights as set, else the method's: a simplex only where the weights are a mixture."""
        return METHODS[method].mixture_weights if self.softmax_weights is None else self.softmax_weights

    # tournamentSize only counts in a GA tournament
    rules: ClassVar[tuple[OptionsRule, ...]] = (OptionsRule(
        "tournamentSize",
        "!has({options}.tournamentSize) || (has({options}.selection) && {options}.selection != 'tournament') || "
        "{options}.tournamentSize <= {population_size}",
        "search.ga.tournamentSize: at most populationSize — a larger tournament picks the same best every time",
    ),)

    def refusal(self, search: SearchShape) -> str | None:
        if self.selection == "tournament" and self.tournament_size > search.population_size:
            return (f"search.ga.tournamentSize: {self.tournament_size} is more than populationSize "
                    f"({search.population_size}) — every tournament would pick the same best; lower it")
        return None


@dataclass(frozen=True)
class Algorithm:
    """One optimizer.

    `modes`: generational (ask a generation, wait for all of it) and, where the optimizer can propose one
    candidate at a time while others are evaluated, async. `multi_objective`: its fitness is one value per
    objective (a Pareto front), and it needs `min_objectives` of them. `module`: evomerge.search.<module>
    registers the optimizer, imported on demand so a build without one library still runs the others.
    `options`: its own block, `search.<name>`, that the spec adds as a field (none: the algorithm has no options).
    """

    name: str
    title: str
    module: str
    summary: str
    modes: tuple[Mode, ...] = ("generational",)
    multi_objective: bool = False
    min_objectives: int = 1
    budget: Budget = ONE_LONG_ROUND
    options: type[AlgorithmOptions] | None = None

    @property
    def supports_async(self) -> bool:
        return "async" in self.modes


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        # the paper's P = 20, T = 3 iterations (maxGenerations 1 + T) and R = 2 rounds (reference/evogm.md §5)
        Algorithm("evogm", "EvoGM", "evogm", "learned generators of winners and losers, hosted by CMA-ES (evogm.variant), "
                  "over rounds of re-merged elites",
                  modes=("generational", "async"), budget=Budget(population_size=20, max_generations=4, rounds=2),
                  options=EvoGMOptions),
        Algorithm("cmaes", "CMA-ES", "cmaes", "CMA-ES (the cmaes package)", options=CMAESOptions),
        Algorithm("ga", "The GA", "ga", "a genetic algorithm", modes=("generational", "async"), options=GAOptions),
        Algorithm("random", "Random search", "random_search", "random search", modes=("generational", "async")),
        Algorithm("nsga2", "NSGA-II", "nsga2", "NSGA-II (pymoo), several objectives: a Pareto front", multi_objective=True,
                  min_objectives=2),
    )
}
ALGORITHM_NAMES = tuple(ALGORITHMS)
DEFAULT_ALGORITHM = "evogm"
ASYNC_ALGORITHMS = tuple(name for name, a in ALGORITHMS.items() if a.supports_async)


OPTIONS: dict[str, type[AlgorithmOptions]] = {name: a.options for name, a in ALGORITHMS.items() if a.options}


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


def refine_refusal(algorithm: Algorithm) -> str:
    return (f"search.refine: search.algorithm {algorithm.name} searches a Pareto front, and a refinement improves one "
            "fitness around one best merge — remove refine, or pick a single-objective algorithm")
