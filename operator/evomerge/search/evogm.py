"""EvoGM: two generator networks learn to turn losing merges into winning ones (shared/reference/evogm.md).

Per round: an initial population (each current expert alone, their uniform mix, random mixes), then
`maxGenerations − 1` iterations that train G₊ (losers → winners) and G₋ (winners → losers) on the round's
history with a cycle-consistency loss and an "aim at the winners' mean" loss, propose G₊(population) and keep
the best `populationSize` of population ∪ offspring. At the end of a round the top-K candidates become the
experts of the next round; since merging is linear in the weights, the optimizer keeps a basis B (per layer
group, K × original experts) and hands out effective coefficients λ_eff = λ·B in the genome's units.

Deviations from the released code, each a fix from §9 of the reference: `single` generator mode counts the
"aim" loss once, not twice; failed candidates rank below every success and never become winners; ties are
broken by ask order (a stable sort); elites are deduplicated and must be linearly independent; effective
weights are clipped to merge.bounds.weight (and counted in `clipped`); the global best is kept as the
effective vector that was actually evaluated. `evogm.jitter` (off by default) adds Gaussian noise to each
offspring, the "optional jitter" of §9.13: without it, proposals collapse onto the winners' mean within a
round (benchmarks/optimizers.py measures both).

Coordinates as released: a weight coefficient is λ = s·y with y ∈ [-1, 1] the generators' (tanh) range and s
the larger magnitude of merge.bounds.weight (s = 1 for the release's [-1, 1]: λ = y), so weight 0 sits at y = 0
whatever the box; see RoundCoordinates.

Generalisations: per-layer-group weights (one coefficient per group × current expert, the same basis
algebra per group); density / slerp-t genes are plain per-original-expert coordinates that are not composed
(they are not linear coefficients), and an elite hands its own values of them to its one-hot member.
The basis shift is exact for task_arithmetic (and linear without normalisation); for normalised linear,
ties and dare methods it is an approximation.

Asynchronous mode (`search.mode: async`) is steady state: offspring are proposed one at a time from the
population members in turn, the generators train `trainingSteps × results / populationSize` steps in total
(so, at equal evaluations, as many steps as the generational mode), and a round ends only when all its
candidates are back (the basis of the next round needs the whole round's history).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from cmaes import CMA
from torch import nn

from ..spec.merge_search import SearchSpec
from .cmaes import injected
from .genome import Genome
from .optimizer import Fitness, Optimizer, PendingRows, failed_last_key, register

log = logging.getLogger(__name__)

PURPOSE_INIT, PURPOSE_NETS, PURPOSE_TRAIN, PURPOSE_FALLBACK, PURPOSE_JITTER, PURPOSE_CMA = 1, 2, 3, 4, 5, 6


@dataclass
class Member:
    """One evaluated candidate of the current round."""

    y: np.ndarray  # per-round coordinates in [-1, 1]
    x: np.ndarray  # the effective vector that was evaluated (genome units)
    fitness: float | None  # None: the evaluation failed
    order: int  # ask order within the round: the stable tie-break

    @property
    def key(self) -> tuple[float, int]:
        return failed_last_key(self.fitness, self.order)


def generator(dim: int, hidden: Sequence[int]) -> nn.Sequential:
    """dim → hidden… → dim MLP, ReLU between layers and tanh at the output (reference §2)."""
    layers: list[nn.Module] = []
    width = dim
    for size in hidden:
        layers += [nn.Linear(width, size, dtype=torch.float32), nn.ReLU()]
        width = size
    layers += [nn.Linear(width, dim, dtype=torch.float32), nn.Tanh()]
    return nn.Sequential(*layers)


class RoundCoordinates:
    """Per-round coordinates y ∈ [-1, 1]^d ↔ effective genome vectors.

    y starts with one coefficient per (layer group, current expert): λ = s·y with s = max(|low|, |high|) of
    merge.bounds.weight, so y = 0 is λ = 0 — tanh's centre, where G₊ proposes most easily — as in the released
    code, which searches λ ∈ [-1, 1] directly (s = 1 there: λ = y). The effective weight of original expert j
    in group g is Σ_k λ[g,k]·B[g,k,j], clipped to the bounds; with bounds [0, h] every y ≤ 0 is weight 0, so
    "leave this expert out" is half of G₊'s range instead of its asymptote. The remaining coordinates are the
    non-weight genes (not linear coefficients), mapped affinely onto their box.
    """

    def __init__(self, genome: Genome, basis: np.ndarray | None):
        self.genome = genome
        self.weights = genome.param_index("weight")  # (groups, original experts) or None
        mask = np.ones(genome.dim, dtype=bool)
        if self.weights is not None:
            mask[self.weights.ravel()] = False
            lows = {genome.genes[i].low for i in self.weights.ravel()}
            highs = {genome.genes[i].high for i in self.weights.ravel()}
            if len(lows) > 1 or len(highs) > 1:
                raise ValueError("EvoGM composes weights across experts: all weight genes need the same bounds")
            self.low, self.high = lows.pop(), highs.pop()
            self.scale = max(abs(self.low), abs(self.high))
        self.others = np.flatnonzero(mask)
        self.basis = basis  # (groups, K, original experts)
        self.k = 0 if basis is None else basis.shape[1]
        self.n_weight = 0 if self.weights is None else self.weights.shape[0] * self.k
        self.dim = self.n_weight + len(self.others)
        self.clipped = 0

    def lam(self, y: np.ndarray) -> np.ndarray:
        """Per-round weight coefficients (groups, K) in weight units."""
        groups = self.weights.shape[0]  # type: ignore[union-attr]
        return self.scale * y[: self.n_weight].reshape(groups, self.k)

    def weight_y(self, lam: np.ndarray) -> np.ndarray:
        return np.clip(lam / self.scale, -1.0, 1.0).ravel()

    def other_y(self, x: np.ndarray) -> np.ndarray:
        low, high = self.genome.lower[self.others], self.genome.upper[self.others]
        return np.clip(2.0 * (x[self.others] - low) / (high - low) - 1.0, -1.0, 1.0)

    def effective(self, y: np.ndarray) -> np.ndarray:
        x = np.empty(self.genome.dim, dtype=np.float64)
        if self.weights is not None:
            # an explicit product-sum: exact for one-hot rows, and the same float result on every replay
            eff = (self.lam(y)[:, :, None] * self.basis).sum(axis=1)
            clipped = np.clip(eff, self.low, self.high)
            self.clipped += int(not np.array_equal(clipped, eff))
            x[self.weights] = clipped
        low, high = self.genome.lower[self.others], self.genome.upper[self.others]
        x[self.others] = low + (high - low) * (np.clip(y[self.n_weight :], -1.0, 1.0) + 1.0) / 2.0
        return self.genome.clip(x)

    def from_genes(self, x: np.ndarray) -> np.ndarray:
        """Coordinates of a genome vector; only meaningful while the basis is the identity (round 0)."""
        parts = [self.weight_y(x[self.weights])] if self.weights is not None else []
        return np.concatenate(parts + [self.other_y(x)])

    def to_round(self, x: np.ndarray) -> np.ndarray:
        """Coordinates over this round's experts of a genome vector: per group the least-squares λ with λ·B = the
        weights (exact when the elites span the group), unclipped; non-weight genes as in from_genes."""
        parts = []
        if self.weights is not None:
            lam = np.stack([x[row] @ np.linalg.pinv(b) for row, b in zip(self.weights, self.basis)])
            parts.append(lam.ravel() / self.scale)
        return np.concatenate(parts + [self.other_y(x)])

    def box(self) -> np.ndarray:
        """(dim, 2) bounds of the coordinates that reach the genome's box, with the identity basis."""
        weight_box = [[self.low / self.scale, self.high / self.scale]] * self.n_weight if self.weights is not None else []
        return np.array(weight_box + [[-1.0, 1.0]] * len(self.others), dtype=np.float64).reshape(self.dim, 2)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Generator math on one CPU thread: the same floats on every replay, whatever the machine's load."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@register("evogm")
class EvoGM(Optimizer):
    """The released algorithm (`evogm.variant: paper`); constructing it with another variant gives that variant."""

    def __new__(cls, genome: Genome, search: SearchSpec, *args: object, **kwargs: object) -> "EvoGM":
        chosen = VARIANTS[search.evogm.variant] if cls is EvoGM else cls
        return super().__new__(chosen)

    def __init__(self, genome: Genome, search: SearchSpec, n_objectives: int = 1, seeds: np.ndarray | None = None):
        super().__init__(genome, search, n_objectives, seeds)
        self.options = search.evogm
        self.population_size = search.population_size
        self.rounds = search.rounds
        self.round_budget = search.population_size * search.max_generations  # (1 + T)·P asks per round
        weights = genome.param_index("weight")
        n_experts = len(genome.experts)
        n_other = genome.dim - (0 if weights is None else weights.size)
        basis = None if weights is None else np.tile(np.eye(n_experts), (weights.shape[0], 1, 1))
        # the non-weight genes each one-hot member starts from: the box centre before any elite exists
        self._elite_others = np.zeros((n_experts if weights is not None else 0, n_other))
        self.best: Member | None = None  # across rounds, as the effective vector evaluated
        self.promoted: list[Member] = []  # the elites that became this round's experts
        self._start_round(basis)

    # ---- ask ------------------------------------------------------------------------------------
    def ask(self, n: int) -> np.ndarray:
        rows = []
        waiting = len(self._pending) > 0  # results of earlier asks are on their way
        while len(rows) < n:
            y = self._next(waiting)
            if y is None:
                break  # the rest needs results first (async) or the search is over
            x = self.coordinates.effective(y)
            self._pending.add(x, (y, self._asked))
            self._asked += 1
            rows.append(x)
        return np.array(rows, dtype=np.float64).reshape(len(rows), self.genome.dim)

    def _next(self, waiting: bool) -> np.ndarray | None:
        if self.finished or self._asked >= self.round_budget:
            return None
        if self._asked < len(self._initial):
            return self._initial[self._asked]
        if not any(m.fitness is not None for m in self.history):
            if waiting:
                return None  # nothing to learn from yet; wait for the results in flight
            return self.rng(PURPOSE_FALLBACK, self.round, self._asked).uniform(-1.0, 1.0, self.coordinates.dim)
        self._train()
        parent = self.population[self._offspring % len(self.population)]
        self._offspring += 1
        return self._offspring_of(parent.y)

    def _offspring_of(self, parent: np.ndarray) -> np.ndarray:
        """G₊(parent), with `jitter` noise when asked for."""
        child = self._propose(parent)
        if self.options.jitter > 0:
            noise = self.rng(PURPOSE_JITTER, self.round, self._asked).normal(0.0, float(self.options.jitter), child.shape)
            child = np.clip(child + noise, -1.0, 1.0)
        return child

    def _known_members(self) -> list[np.ndarray]:
        """Each current expert alone, their uniform mix, then seeds (round 0), at most a population of them."""
        rows = [self._one_hot(k) for k in range(len(self._elite_others))]
        rows.append(self._uniform())
        if self.round == 0:
            rows.extend(self.coordinates.from_genes(s) for s in self.seeds)
        return rows[: self.population_size]

    def _initial_population(self) -> list[np.ndarray]:
        """The known members, then random rows up to a population (reference §4, §6)."""
        rows = self._known_members()
        randoms = self.rng(PURPOSE_INIT, self.round).uniform(-1.0, 1.0, (self.population_size, self.coordinates.dim))
        return rows + list(randoms[: self.population_size - len(rows)])

    def _one_hot(self, k: int) -> np.ndarray:
        """Current expert k alone (the k-th elite after a basis shift), with its own non-weight genes."""
        c = self.coordinates
        lam = np.zeros((c.weights.shape[0], c.k)) if c.weights is not None else None
        if lam is not None:
            lam[:, k] = 1.0
        return self._row(lam, self._elite_others[k])

    def _uniform(self) -> np.ndarray:
        """The current experts' uniform mix, with the mean of their non-weight genes."""
        c = self.coordinates
        uniform = np.full((c.weights.shape[0], c.k), 1.0 / c.k) if c.weights is not None else None
        others = self._elite_others.mean(axis=0) if len(self._elite_others) else np.zeros(len(c.others))
        return self._row(uniform, others)

    def _row(self, lam: np.ndarray | None, others: np.ndarray) -> np.ndarray:
        weights = [] if lam is None else [self.coordinates.weight_y(lam)]
        return np.concatenate(weights + [others])

    # ---- generators -----------------------------------------------------------------------------
    def split(self) -> tuple[list[Member], list[Member]]:
        """Winners H⁺ (the best max(1, ⌊ρ|H|⌋), successes only) and losers H⁻ (the rest) of the round."""
        ranked = sorted(self.history, key=lambda m: m.key)
        top = max(1, math.floor(self.options.winner_portion * len(ranked)))
        winners = [m for m in ranked[:top] if m.fitness is not None]
        return winners, ranked[len(winners) :]

    def _build_generators(self, iteration: int) -> None:
        seed = int(self.rng(PURPOSE_NETS, self.round, iteration).integers(2**62))
        dim, hidden = self.coordinates.dim, self.options.hidden_dims
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.lose2win = generator(dim, hidden)
            self.win2lose = generator(dim, hidden) if self.options.generator_mode == "dual" else None
        params = list(self.lose2win.parameters()) + (list(self.win2lose.parameters()) if self.win2lose else [])
        # fused: the same Adam update in one kernel, about 1.5× faster on CPU at these sizes
        self._adam = torch.optim.Adam(params, lr=float(self.options.learning_rate), fused=True)
        self._net_iteration = iteration

    def _training_target(self) -> int:
        """Adam steps the generators should have taken by now: trainingSteps per populationSize results."""
        return self.options.training_steps * self._told // self.population_size

    def _train(self) -> None:
        """Bring the generators up to the training target (exactly trainingSteps per iteration)."""
        iteration = self._told // self.population_size
        fresh = self.lose2win is None or (
            self.options.generator_reinit == "perIteration" and iteration != self._net_iteration
        )
        if fresh:
            self._build_generators(iteration)
        if self.options.generator_reinit == "perIteration":
            steps = self.options.training_steps if fresh else 0
        else:
            steps = self._training_target() - self._steps
        winners, losers = self.split()
        if steps <= 0 or not winners or not losers:
            return
        rng = self.rng(PURPOSE_TRAIN, self.round, self._steps)
        w_all = torch.tensor(np.stack([m.y for m in winners]), dtype=torch.float32)
        l_all = torch.tensor(np.stack([m.y for m in losers]), dtype=torch.float32)
        m = min(len(w_all), len(l_all))
        mse = nn.functional.mse_loss
        cycle, aim = float(self.options.cycle_scale), float(self.options.opt_scale)
        with _one_thread():
            for _ in range(steps):
                w = w_all[torch.from_numpy(rng.permutation(len(w_all))[:m])]
                l = l_all[torch.from_numpy(rng.permutation(len(l_all))[:m])]
                fake_winners = self.lose2win(l)
                loss = aim * mse(fake_winners, w.mean(dim=0, keepdim=True).expand_as(fake_winners))
                if self.win2lose is not None:
                    loss = loss + cycle * (mse(self.win2lose(fake_winners), l) + mse(self.lose2win(self.win2lose(w)), w))
                self._adam.zero_grad()
                loss.backward()
                self._adam.step()
        self._steps += steps

    def _propose(self, parent: np.ndarray) -> np.ndarray:
        with _one_thread(), torch.no_grad():
            out = self.lose2win(torch.tensor(parent[None, :], dtype=torch.float32))
        return np.clip(out.numpy()[0].astype(np.float64), -1.0, 1.0)

    # ---- tell -----------------------------------------------------------------------------------
    def tell(self, vectors: np.ndarray, fitness: Sequence[Fitness]) -> None:
        for x, f in zip(np.asarray(vectors, dtype=np.float64), fitness):
            y, order = self._pending.pop(x)
            value = None if f is None or not math.isfinite(float(f)) else float(f)  # type: ignore[arg-type]
            member = Member(y, x.copy(), value, order)
            self.history.append(member)
            self._told += 1
            self.population = sorted(self.population + [member], key=lambda m: m.key)[: self.population_size]
            if value is not None and (self.best is None or value > self.best.fitness):  # type: ignore[operator]
                self.best = member
            self._told_member(member)
            if self._told == self.round_budget:
                self._end_round()

    def _told_member(self, member: Member) -> None:
        """What a variant learns from one result beyond the round's history (the paper: nothing)."""

    def _end_round(self) -> None:
        if self.coordinates.clipped:
            log.info("evogm round %d: %d candidates had effective weights clipped to merge.bounds.weight",
                     self.round, self.coordinates.clipped)
        if self.round + 1 >= self.rounds:
            self.finished = True
            return
        basis = self.coordinates.basis
        elites = self.elites()
        self.promoted = elites
        if elites:
            c = self.coordinates
            if c.weights is not None:
                basis = np.stack([m.x[c.weights] for m in elites], axis=1)  # (groups, K, original experts)
            self._elite_others = np.stack([c.other_y(m.x) for m in elites])
        self.round += 1
        self._start_round(basis)

    def elites(self) -> list[Member]:
        """The round's best successes, at most topK (default: the original experts' count), deduplicated and
        linearly independent in their weights — collinear elites would make the next basis degenerate."""
        limit = self.options.top_k or len(self.genome.experts)
        weights = self.coordinates.weights
        chosen: list[Member] = []
        seen: set[bytes] = set()
        rows: list[np.ndarray] = []
        for m in sorted((m for m in self.history if m.fitness is not None), key=lambda m: m.key):
            if len(chosen) == limit:
                break
            if m.x.tobytes() in seen:
                continue
            seen.add(m.x.tobytes())
            if weights is not None:
                row = m.x[weights].ravel()
                if np.linalg.matrix_rank(np.stack(rows + [row])) <= len(rows):
                    continue
                rows.append(row)
            chosen.append(m)
        return chosen

    def _start_round(self, basis: np.ndarray | None) -> None:
        self.coordinates = RoundCoordinates(self.genome, basis)
        self.history: list[Member] = []  # H: every result of this round
        self.population: list[Member] = []  # the best populationSize of H, best first
        self._pending = PendingRows()
        self._asked = 0
        self._told = 0
        self._offspring = 0
        self._steps = 0
        self._net_iteration = -1
        self.lose2win: nn.Sequential | None = None
        self.win2lose: nn.Sequential | None = None
        self._initial = self._initial_population()


class CMAHostedEvoGM(EvoGM):
    """EvoGM hosted by CMA-ES (`evogm.variant: cmaHosted`): the paper's generators, losses, winner/loser split and
    rounds of elites, with CMA-ES owning the proposal distribution.

    Why: the released G₊ is a contraction (its offspring vary about half as much as its parents), so within a
    round the proposals collapse onto the winners' mean whatever the distance to the optimum
    (benchmarks/optimizers.py measures it). Here CMA-ES's step size and covariance set the proposal scale, which
    follows the remaining distance; G₊ rewrites a share (`injection`) of each CMA generation from CMA's own
    samples, and those injected points are told to CMA clipped in Mahalanobis norm (Hansen, "Injecting external
    solutions into CMA-ES", arXiv 1110.4181), so a contracting G₊ can pull the mean but cannot shrink the step
    size. The first generation is the paper's known members (each expert alone, the uniform mix, the seeds; told as
    injected points), then CMA-ES's own samples where the paper draws random mixes of the whole box: CMA-ES starts at
    the uniform mix (or the first seed) with step `sigma0`, and a random mix far from that mean teaches it little.

    CMA-ES works in the first round's coordinates (weights / s, the genome's box), where a step means the same
    in every round; the generators work in each round's elite coordinates as in the paper. At a round's end the
    elites become the next round's experts and its first history (they are evaluated already, so unlike the
    paper they are not evaluated again), G₊ and G₋ start afresh, and CMA-ES restarts at the best elite with step
    `restartSigma` and a fresh covariance.

    Async mode is steady state: a candidate is sampled from CMA-ES's distribution of the moment, every
    populationSize results are told as one CMA generation, and a result sampled before the last update is told
    as an injected point (clipped as G₊'s are), so no generation waits for its stragglers.
    """

    def __init__(self, genome: Genome, search: SearchSpec, n_objectives: int = 1, seeds: np.ndarray | None = None):
        self.step_sizes: list[float] = []  # CMA-ES's σ at each (re)start and after each update, all rounds
        super().__init__(genome, search, n_objectives, seeds)

    def _start_round(self, basis: np.ndarray | None) -> None:
        super()._start_round(basis)
        if self.round == 0:
            self.home = self.coordinates  # the identity basis: CMA-ES's coordinates in every round
            start = self.home.from_genes(self.seeds[0]) if len(self.seeds) else self._uniform()
            self._restart(start, float(self.options.sigma0))
            self._initial = self._known_members()  # CMA-ES's own samples fill the rest, not random mixes
            return
        if self.promoted:  # (all of a round failing leaves none: then the round starts as the paper's)
            self._initial = []
            self.history = [Member(self._one_hot(k), m.x, m.fitness, k - len(self.promoted))
                            for k, m in enumerate(self.promoted)]
            self.population = list(self.history)
        if self.options.restart_sigma is not None:
            best = self.best.x if self.best is not None else self.home.effective(self._uniform())
            self._restart(self.home.from_genes(best), float(self.options.restart_sigma))
        # else CMA-ES carries on: a round ends with all its results told, so no CMA generation is half full

    def _restart(self, mean: np.ndarray, sigma: float) -> None:
        bounds = self.home.box()
        self.cma = CMA(mean=np.clip(mean, bounds[:, 0], bounds[:, 1]), sigma=sigma, bounds=bounds,
                       seed=int(self.rng(PURPOSE_CMA, self.round).integers(2**31 - 1)), population_size=self.population_size)
        self._generation: list[tuple[int, np.ndarray, float | None]] = []  # (order, point told to CMA, fitness)
        self._slots: dict[int, tuple[int, bool]] = {}  # ask order → (CMA generation sampled from, rewritten by G₊)
        self.step_sizes.append(sigma)

    def ask(self, n: int) -> np.ndarray:
        rows = []
        while len(rows) < n and not self.finished and self._asked < self.round_budget:
            rewritten = True  # the paper's first population is not CMA-ES's sample either
            if self._asked < len(self._initial):
                y = self._initial[self._asked]
                x = self.coordinates.effective(y)
            else:
                x = self.home.effective(self.cma.ask())
                y = self.coordinates.to_round(x)
                slot = self._asked % self.population_size
                rewritten = slot < round(float(self.options.injection) * self.population_size) and self._can_propose()
                if rewritten:
                    self._train()
                    y = self._offspring_of(y)
                    x = self.coordinates.effective(y)
            self._slots[self._asked] = (self.cma.generation, rewritten)
            self._pending.add(x, (y, self._asked))
            self._asked += 1
            rows.append(x)
        return np.array(rows, dtype=np.float64).reshape(len(rows), self.genome.dim)

    def _can_propose(self) -> bool:
        winners, losers = self.split()
        return bool(winners) and bool(losers)

    def _training_target(self) -> int:
        """trainingSteps per populationSize members of the round's history, before the first proposal of each."""
        return self.options.training_steps * -(-len(self.history) // self.population_size)

    def _told_member(self, member: Member) -> None:
        generation, rewritten = self._slots.pop(member.order)
        u = self.home.from_genes(member.x)
        own = generation == self.cma.generation and not rewritten  # sampled from the distribution CMA-ES has now
        self._generation.append((member.order, u if own else injected(self.cma, u), member.fitness))
        if len(self._generation) == self.population_size:
            self._update()

    def _update(self) -> None:
        """Tell CMA-ES the generation; failures rank below every success (CMA-ES only reads ranks)."""
        results, self._generation = sorted(self._generation, key=lambda r: r[0]), []
        successes = [f for _, _, f in results if f is not None]
        if not successes:
            return  # nothing learnt; sample the same distribution again
        worst = -min(successes)
        self.cma.tell([(told, -f if f is not None else worst + 1.0 + rank) for rank, (_, told, f) in enumerate(results)])
        self.step_sizes.append(float(self.cma._sigma))


VARIANTS: dict[str, type[EvoGM]] = {"paper": EvoGM, "cmaHosted": CMAHostedEvoGM}
