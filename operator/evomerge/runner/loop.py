"""The search loop: ask the optimizer, evaluate through an executor, tell it, record everything.

Every step is an event in the history store, and the loop starts by replaying those events into a fresh
optimizer: a search killed at any moment continues exactly where it stopped, and a recipe scored once
is never scored again.

Two modes. Generational: ask a whole population, wait for every result, tell them together. Asynchronous
(`search.mode: async`): keep `evaluation.parallelism` evaluations in flight and ask one new candidate as soon
as any finishes, telling each result on arrival — no GPU waits for the slowest candidate of a generation. Its
"generation" (for summaries, maxGenerations and early stopping) is every populationSize results. Both modes
record the same events, so both replay exactly.

With `search.refine` the search proper stops `refine.evaluations` candidates short of the budget, and a local
refinement (search/refine.py) spends them around the best merge, a step of evaluation.parallelism candidates at a
time in either mode. Its asks are marked in the history (`Ask.refine`) and replayed into the refiner, so a search
killed during its refinement resumes there too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..catalogue.contracts import Ask, Generation, Result, Tell, event_wire, parse_events
from ..evaluate.scoring import fitness as scalar_fitness
from ..evaluate.scoring import fitness_vector
from ..executors.base import EvalResult, Executor
from ..search.genome import Genome
from ..search.optimizer import Fitness, Optimizer
from ..search.refine import Refiner
from ..spec.merge_search import GenerationSummary, MergeSearchSpec
from .history import HistoryStore
from .sink import NullSink, StatusSink


class SearchFailed(RuntimeError):
    """The search cannot go on (for example: more failed evaluations than the spec allows)."""


class HistoryMismatch(RuntimeError):
    """The history was written by a different spec or code version: replay does not reproduce it."""


@dataclass
class Candidate:
    id: str
    round: int
    generation: int
    vector: list[float]
    recipe: dict[str, Any]
    digest: str
    scores: dict[str, float] | None = None
    fitness: float | None = None
    error: str | None = None
    seconds: float = 0.0
    cached: bool = False
    refine: bool = False  # proposed by the local refinement after the search proper


@dataclass
class SearchOutcome:
    best: Candidate | None
    candidates: list[Candidate]
    summaries: list[GenerationSummary]
    stop_reason: str
    pareto_front: list[Candidate] = field(default_factory=list)

    @property
    def evaluations(self) -> int:
        return sum(1 for c in self.candidates if c.scores is not None or c.error is not None)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.candidates if c.error is not None)


class SearchRunner:
    def __init__(
        self,
        spec: MergeSearchSpec,
        genome: Genome,
        make_optimizer: Callable[[], Optimizer],
        executor: Executor,
        history: HistoryStore,
        sink: StatusSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        in_flight: int | None = None,
    ):
        """`in_flight`: how many evaluations async mode keeps running (default evaluation.parallelism); the
        cluster keeps every evaluation pod's batch full with parallelism × candidates per pod."""
        self.spec = spec
        self.genome = genome
        self.optimizer = make_optimizer()
        self.executor = executor
        self.history = history
        self.sink = sink or NullSink()
        self.clock = clock
        self.multi_objective = self.optimizer.entry.multi_objective
        self.asynchronous = spec.search.mode == "async"  # the spec admits it only for an algorithm that supports it
        self.in_flight = in_flight or spec.evaluation.parallelism
        self.candidates: dict[str, Candidate] = {}
        self.by_digest: dict[str, Candidate] = {}
        self.summaries: list[GenerationSummary] = []
        self.asked: list[list[str]] = []  # ids of each ask of the search proper, in order
        self.refiner: Refiner | None = None  # made when the refinement asks first
        self.refine_asked: list[list[str]] = []  # ids of each refinement step, in order
        self.told: set[str] = set()
        self.told_order: list[str] = []  # ids of the search proper in the order they were told (async generations)
        self._summary_clock = 0.0  # async mode: when the last summary was written
        self.generation = 0
        self._stale_generations = 0
        self._best_for_patience: float | None = None

    # ---- public -------------------------------------------------------------------------------
    def run(self) -> SearchOutcome:
        """The search proper to its stop (at once, when the history already holds it), then any refinement."""
        resumed = self._replay(self.history.events())
        self.sink.started(self._budget(), resumed)
        if self.asynchronous:
            reason = self._run_async()
        else:
            self._settle_generation()
            reason = self._stop_reason()
            while reason is None:
                self._run_generation()
                reason = self._stop_reason()
        if self.spec.search.refine is not None:
            self._refine()
        return self.outcome(reason)

    def outcome(self, reason: str) -> SearchOutcome:
        scored = [c for c in self.candidates.values() if c.fitness is not None]
        best = max(scored, key=lambda c: (c.fitness, -_order(c.id)), default=None)
        return SearchOutcome(best, list(self.candidates.values()), list(self.summaries), reason, self._pareto(scored))

    # ---- replay -----------------------------------------------------------------------------------
    def _replay(self, events: list[dict[str, Any]]) -> int:
        for event in parse_events(events):
            if isinstance(event, Ask):
                proposer = self._started_refiner() if event.refine else self.optimizer
                vectors = proposer.ask(len(event.ids))
                if not np.array_equal(vectors, np.array(event.vectors, dtype=np.float64)):
                    raise HistoryMismatch(
                        f"replaying ask #{len(self.asked) + len(self.refine_asked)} gave different candidates than the "
                        "history records — the spec or evomerge version changed; start a new run directory"
                    )
                self._register_ask(list(event.ids), vectors, event.round, event.generation, event.refine)
            elif isinstance(event, Result):
                self._record_result(EvalResult(event.id, event.scores, event.error, event.seconds), event.cached)
            elif isinstance(event, Tell):
                self._tell(list(event.ids), record=False)
            else:
                self._add_summary(GenerationSummary.model_validate(event.summary), record=False)
        return sum(1 for c in self.candidates.values() if c.scores is not None or c.error is not None)

    # ---- one generation -------------------------------------------------------------------------
    def _settle_generation(self) -> None:
        """A kill between a generation's last tell and its summary leaves it unsummarised: summarise it now."""
        if self.asked and set(self.asked[-1]) <= self.told and len(self.summaries) < len(self.asked):
            self._summarise(self.asked[-1], 0.0)

    def _run_generation(self) -> None:
        started = self.clock()
        open_ask = self.asked[-1] if self.asked and not set(self.asked[-1]) <= self.told else None
        ids = open_ask if open_ask is not None else self._ask(self._next_batch_size())
        for cid in ids:
            candidate = self.candidates[cid]
            if candidate.scores is None and candidate.error is None:
                self._evaluate_or_reuse(candidate)
        while any(self._unfinished(cid) for cid in ids):
            for result in self.executor.wait():
                self._record_result(result, cached=False, record=True)
        self._tell(ids, record=True)
        self._summarise(ids, self.clock() - started)

    def _ask(self, n: int, refine: bool = False) -> list[str]:
        round_ = self.optimizer.round
        vectors = (self._started_refiner() if refine else self.optimizer).ask(n)
        if len(vectors) == 0:
            return []  # nothing to propose until results arrive (async); an empty ask changes no state
        base = len(self.candidates)
        ids = [f"c{base + i:06d}" for i in range(len(vectors))]
        vectors_wire = tuple(map(tuple, vectors.tolist()))
        self.history.append(event_wire(Ask(round_, self.generation, tuple(ids), vectors_wire, refine)))
        self._register_ask(ids, vectors, round_, self.generation, refine)
        return ids

    def _register_ask(self, ids: list[str], vectors: np.ndarray, round_: int, generation: int, refine: bool = False) -> None:
        (self.refine_asked if refine else self.asked).append(list(ids))
        self.generation = generation
        for cid, vector in zip(ids, vectors):
            recipe = self.genome.decode(vector)
            self.candidates[cid] = Candidate(cid, round_, generation, vector.tolist(), recipe.to_dict(), recipe.digest(),
                                             refine=refine)

    def _evaluate_or_reuse(self, candidate: Candidate) -> None:
        known = self.by_digest.get(candidate.digest)
        if known is not None and known.scores is not None:
            self._record_result(EvalResult(candidate.id, known.scores, None, 0.0), cached=True, record=True)
            return
        self.executor.submit(candidate.id, self.genome.decode(np.array(candidate.vector)))

    def _unfinished(self, cid: str) -> bool:
        c = self.candidates[cid]
        return c.scores is None and c.error is None

    def _record_result(self, result: EvalResult, cached: bool, record: bool = False) -> None:
        candidate = self.candidates[result.candidate]
        candidate.scores, candidate.error, candidate.seconds, candidate.cached = (
            result.scores, result.error, result.seconds, cached
        )
        if result.scores is not None:
            candidate.fitness = scalar_fitness(self.spec.objectives, result.scores)
            self.by_digest.setdefault(candidate.digest, candidate)
        if record:
            self.history.append(event_wire(Result(result.candidate, result.scores, result.error, round(result.seconds, 4), cached)))
            best = self.outcome("").best
            self.sink.evaluation(result, candidate.fitness, best.fitness if best else None)
            limit = self.spec.evaluation.max_failed_evaluations
            failed = sum(1 for c in self.candidates.values() if c.error is not None)
            if failed > limit:
                raise SearchFailed(
                    f"{failed} evaluations failed (evaluation.maxFailedEvaluations is {limit}); last error: {result.error}"
                )

    def _tell(self, ids: list[str], record: bool) -> None:
        vectors = np.array([self.candidates[c].vector for c in ids], dtype=np.float64)
        if self.candidates[ids[0]].refine:  # a tell never mixes the two: each tells one ask's candidates
            self._started_refiner().tell(vectors, [self.candidates[c].fitness for c in ids])
        else:
            self.optimizer.tell(vectors, [self._fitness_for_optimizer(self.candidates[c]) for c in ids])
            self.told_order.extend(ids)
        self.told.update(ids)
        if record:
            self.history.append(event_wire(Tell(tuple(ids))))

    def _fitness_for_optimizer(self, c: Candidate) -> Fitness:
        if c.scores is None:
            return None
        return fitness_vector(self.spec.objectives, c.scores) if self.multi_objective else c.fitness

    def _summarise(self, ids: list[str], seconds: float) -> None:
        group = [self.candidates[c] for c in ids]
        values = [c.fitness for c in group if c.fitness is not None]
        summary = GenerationSummary(
            round=group[0].round,
            generation=self.generation,
            count=len(group),
            failed=sum(1 for c in group if c.error is not None),
            best=max(values) if values else None,
            mean=sum(values) / len(values) if values else None,
            worst=min(values) if values else None,
            seconds=round(seconds, 3),
        )
        self._add_summary(summary, record=True)

    def _add_summary(self, summary: GenerationSummary, record: bool) -> None:
        self.summaries.append(summary)
        self.generation = summary.generation + 1
        best = self.outcome("").best
        best_fitness = best.fitness if best else None
        early = self.spec.search.early_stopping
        min_delta = early.min_delta if early else 0.0
        if best_fitness is not None and (self._best_for_patience is None or best_fitness > self._best_for_patience + min_delta):
            self._best_for_patience = best_fitness
            self._stale_generations = 0
        else:
            self._stale_generations += 1
        if record:
            self.history.append(event_wire(Generation(summary.to_wire())))
            self.sink.generation(summary)

    # ---- local refinement -------------------------------------------------------------------------
    def _started_refiner(self) -> Refiner:
        """The refiner, started at its first ask from the best of the search proper (every result of which is in)."""
        if self.refiner is None:
            if self.spec.search.refine is None:
                raise HistoryMismatch("the history holds refinement steps, but this spec sets no search.refine — "
                                      "start a new run directory")
            best = self.outcome("").best
            if best is None or best.fitness is None:
                raise SearchFailed("search.refine: the search proper scored no candidate, so there is no best to refine")
            self.refiner = Refiner(self.genome, self.spec.search, np.array(best.vector), best.fitness)
        return self.refiner

    def _refine(self) -> None:
        """Steps of evaluation.parallelism candidates around the incumbent until refine.evaluations are spent."""
        if self.outcome("").best is None:
            return  # nothing scored: nothing to refine around (the search's own stop reason says why)
        total = self.spec.search.refine.evaluations  # type: ignore[union-attr]
        while True:
            open_step = self.refine_asked[-1] if self.refine_asked and not set(self.refine_asked[-1]) <= self.told else None
            spent = sum(len(ids) for ids in self.refine_asked)
            if open_step is None and spent >= total:
                return
            ids = open_step or self._ask(min(self.spec.evaluation.parallelism, total - spent), refine=True)
            for cid in ids:
                if self._unfinished(cid):
                    self._evaluate_or_reuse(self.candidates[cid])
            while any(self._unfinished(cid) for cid in ids):
                for result in self.executor.wait():
                    self._record_result(result, cached=False, record=True)
            self._tell(ids, record=True)

    # ---- stopping -------------------------------------------------------------------------------
    def _budget(self) -> int | None:
        return self.spec.search.budget

    def _search_budget(self) -> int:
        """Candidates the search proper may ask: the budget less what search.refine keeps for itself."""
        refine = self.spec.search.refine
        return self.spec.search.budget - (refine.evaluations if refine else 0)

    def _searched(self) -> int:
        return sum(len(ids) for ids in self.asked)

    def _budget_stop_reason(self) -> str | None:
        """Why the search proper may ask no more candidates by count, if it may not."""
        s = self.spec.search
        if s.refine is not None and self._searched() >= self._search_budget():
            return f"search budget reached ({self._search_budget()} evaluations; {s.refine.evaluations} kept for search.refine)"
        if s.max_evaluations is not None and self._searched() >= s.max_evaluations:
            return "maxEvaluations reached"
        return None

    def _next_batch_size(self) -> int:
        left = self._search_budget() - self._searched()
        return max(1, min(self.spec.search.population_size, left))

    def _stop_reason(self) -> str | None:
        s = self.spec.search
        if self.asked and not set(self.asked[-1]) <= self.told:
            return None  # an interrupted generation is always completed first
        return self._limit_reached(len(self.summaries) >= s.max_generations * s.rounds)

    def _limit_reached(self, generations_done: bool) -> str | None:
        """The first limit the search proper has reached: its share of the budget, its generations
        (`generations_done`, as its mode counts them), early stopping, or an optimizer with nothing left to propose."""
        s = self.spec.search
        by_count = self._budget_stop_reason()
        if by_count is not None:
            return by_count
        if generations_done:
            return "maxGenerations reached"
        if s.early_stopping and self._stale_generations >= s.early_stopping.patience:
            return self._early_stop_message()
        if getattr(self.optimizer, "finished", False):
            return "optimizer finished"
        return None

    def _early_stop_message(self) -> str:
        early = self.spec.search.early_stopping
        return f"no improvement above {early.min_delta} for {early.patience} generations"  # type: ignore[union-attr]

    # ---- asynchronous mode ----------------------------------------------------------------------
    def _run_async(self) -> str:
        """Keep `in_flight` evaluations running; ask one candidate whenever a slot frees."""
        self._summary_clock = self.clock()
        in_flight = self._settle_async()
        slots = self.in_flight
        while True:
            reason = self._async_stop_reason()
            while reason is None and len(in_flight) < slots:
                ids = self._ask(1)
                if not ids:
                    break  # the optimizer needs results before it can propose more
                self._evaluate_or_reuse(self.candidates[ids[0]])
                if self._unfinished(ids[0]):
                    in_flight.add(ids[0])
                else:
                    self._tell_async(ids[0])  # a cache hit: its result is already recorded
                reason = self._async_stop_reason()
            if not in_flight:
                if reason is None:
                    raise SearchFailed(
                        f"search.algorithm {self.spec.search.algorithm!r} proposed no candidate while no evaluation "
                        "was running — this is a bug in the optimizer"
                    )
                return reason
            for result in self.executor.wait():
                self._record_result(result, cached=False, record=True)
                in_flight.discard(result.candidate)
                self._tell_async(result.candidate)

    def _settle_async(self) -> set[str]:
        """After a replay: tell a result the kill left untold, write missing summaries, resubmit what was in flight."""
        for cid in [c for ids in self.asked for c in ids if c not in self.told and not self._unfinished(c)]:
            self._tell_async(cid)
        self._summarise_async()
        in_flight = set()
        for cid in [c for ids in self.asked for c in ids if self._unfinished(c)]:
            self._evaluate_or_reuse(self.candidates[cid])
            if self._unfinished(cid):
                in_flight.add(cid)
            else:
                self._tell_async(cid)
        return in_flight

    def _tell_async(self, cid: str) -> None:
        self._tell([cid], record=True)
        self._summarise_async()

    def _summarise_async(self) -> None:
        """One summary per populationSize results told: the asynchronous mode's generation."""
        size = self.spec.search.population_size
        while len(self.told_order) >= size * (len(self.summaries) + 1):
            start = size * len(self.summaries)
            now = self.clock()
            self._summarise(self.told_order[start : start + size], now - self._summary_clock)
            self._summary_clock = now

    def _async_stop_reason(self) -> str | None:
        """Why no further candidate may be asked (what is in flight still finishes and is told)."""
        s = self.spec.search
        return self._limit_reached(self._searched() >= s.population_size * s.max_generations * s.rounds)

    def _pareto(self, scored: Sequence[Candidate]) -> list[Candidate]:
        if len(self.spec.objectives) < 2:
            return []
        points = [(c, fitness_vector(self.spec.objectives, c.scores or {})) for c in scored]
        front = []
        for c, p in points:
            dominated = any(all(q_i >= p_i for q_i, p_i in zip(q, p)) and q != p for _, q in points)
            if not dominated and not any(f.digest == c.digest for f in front):
                front.append(c)
        return front


def _order(candidate_id: str) -> int:
    return int(candidate_id[1:]) if candidate_id[1:].isdigit() else math.inf  # type: ignore[return-value]
