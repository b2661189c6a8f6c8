"""The controller's status writer against a real API server: a multi-objective search's Pareto front in status."""

from __future__ import annotations

import numpy as np

from evomerge.evaluate.scoring import fitness
from evomerge.executors.local import LocalExecutor
from evomerge.k8s.status_sink import SearchStatusSink
from evomerge.merge.recipe import MergeRecipe
from evomerge.runner.loop import SearchOutcome, SearchRunner
from evomerge.search.genome import genome_for
from evomerge.search.optimizer import make_optimizer
from evomerge.spec.crd import render_crd
from evomerge.spec.merge_search import GenerationSummary, MergeSearchSpec
from test_operator import kube, search_body, status_of  # noqa: F401 (kube: the fixture)
from tests.runner.fakes import MemoryHistory

OBJECTIVES = [{"task": "t", "metric": "reach"}, {"task": "t", "metric": "cost", "direction": "minimize"}]


def non_dominated(scores: dict[str, dict[str, float]]) -> set[str]:
    """Candidates no other one beats on both objectives: more reach (maximised) at no more cost (minimised)."""
    def dominates(p: dict[str, float], q: dict[str, float]) -> bool:
        return p["t/reach"] >= q["t/reach"] and p["t/cost"] <= q["t/cost"] and p != q

    return {c for c, q in scores.items() if not any(dominates(p, q) for p in scores.values())}


class RecordingSink(SearchStatusSink):
    """Reads status back from the API server after each generation's write, as `kubectl get` would."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.after_generation: list[dict] = []

    def generation(self, summary: GenerationSummary) -> None:
        super().generation(summary)
        self.after_generation.append(status_of(self.kube, self.namespace, self.name))


def test_a_multi_objective_search_writes_exactly_its_pareto_front_into_status(kube, namespace):
    body = search_body("front", namespace, objectives=OBJECTIVES,
                       search={"algorithm": "nsga2", "populationSize": 6, "maxGenerations": 2, "seed": 4})
    search = kube.create(body)
    spec = MergeSearchSpec.model_validate(search["spec"])
    genome = genome_for(spec, 2)

    def score(recipe: MergeRecipe) -> dict[str, float]:  # a trade-off: more reach costs more
        x = genome.encode(recipe)
        return {"t/reach": round(float(x[0] + x[1]), 6), "t/cost": round(float(x[0] ** 2 + np.mean(x[1:])), 6)}

    sink = RecordingSink(kube, search, offsets={})
    runner = SearchRunner(spec, genome, lambda: make_optimizer(genome, spec.search, len(spec.objectives)),
                          LocalExecutor(lambda: score), MemoryHistory(), sink)
    sink.bind(runner)
    outcome = runner.run()
    sink.finish(outcome)

    scored = {c.id: c.scores for c in outcome.candidates if c.scores is not None}
    assert len(scored) == 12
    status = status_of(kube, namespace, "front")
    front = {entry["candidate"]: entry for entry in status["paretoFront"]}
    assert set(front) == non_dominated(scored) and 1 < len(front) < len(scored)
    for candidate, entry in front.items():
        assert {k: float(v) for k, v in entry["scores"].items()} == scored[candidate]
        assert float(entry["score"]) == fitness(spec.objectives, scored[candidate])
        assert "recipe" not in entry  # the front stays small; status.best and the history carry recipes
    assert status["best"]["recipe"] == next(c.recipe for c in outcome.candidates if c.id == status["best"]["candidate"])
    assert status["stopReason"] == "maxGenerations reached"
    first_generation = {c: s for c, s in scored.items() if int(c[1:]) < 6}
    assert {e["candidate"] for e in sink.after_generation[0]["paretoFront"]} == non_dominated(first_generation)


class _Epoch2Runner:
    """What progress() reads of a runner in a re-merge's epoch: its optimizer's round and its outcome so far."""

    optimizer = type("Optimizer", (), {"round": 0})()

    def outcome(self, reason: str) -> SearchOutcome:
        summaries = [GenerationSummary(round=0, generation=g, count=2) for g in range(2)]
        return SearchOutcome(None, [], summaries, reason)


def test_a_later_epoch_numbers_its_generations_on_from_the_epochs_before_it():
    sink = SearchStatusSink(None, {"metadata": {"namespace": "n", "name": "s"}},  # type: ignore[arg-type]
                            {"round": 1, "generation": 4, "evaluations": 16})
    sink.bind(_Epoch2Runner())  # type: ignore[arg-type]
    status = sink.progress()
    assert (status["round"], status["generation"], status["evaluations"]) == (2, 6, 16)
    assert [(g["round"], g["generation"]) for g in status["generations"]] == [(2, 4), (2, 5)]  # rounds from 1
    assert (status["epochRound"], status["epochGeneration"]) == (1, 2)  # kubectl's ROUND and GENERATION: this epoch's


def test_kubectls_round_never_exceeds_spec_search_rounds_after_spec_edits():
    """Issue 18: a one-round search read ROUND 3 after two spec edits. Each epoch's sink starts from the status the
    one before it left (the operator's offsets), as on the cluster; the printer column's path is read from the CRD."""
    (column,) = [c for c in render_crd("MergeSearch")["spec"]["versions"][0]["additionalPrinterColumns"] if c["name"] == "Round"]
    field = column["jsonPath"].removeprefix(".status.")
    rounds = MergeSearchSpec.model_validate(
        {"baseModel": {"uri": "pvc://m/base"}, "experts": [{"name": "a", "uri": "pvc://m/a"}, {"name": "b", "uri": "pvc://m/b"}],
         "objectives": [{"task": "t"}],
         "search": {"algorithm": "random"}}).search.rounds
    assert rounds == 1
    status: dict = {}
    for epoch in (1, 2, 3):  # the first run, then two spec edits
        sink = SearchStatusSink(None, {"metadata": {"namespace": "n", "name": "s"}},  # type: ignore[arg-type]
                                {k: status.get(k, 0) for k in ("round", "generation", "evaluations")})
        sink.bind(_Epoch2Runner())  # type: ignore[arg-type]
        status = sink.progress()
        assert status[field] <= rounds, f"epoch {epoch}: ROUND {status[field]} on a {rounds}-round search"
    assert status["round"] == 3  # the cumulative count stays in status for the history's numbering


class _MinimisedRunner:
    """A runner whose best candidate scored 6.82 on a minimised objective: its fitness is -6.82."""

    optimizer = type("Optimizer", (), {"round": 0})()

    def outcome(self, reason: str) -> SearchOutcome:
        from evomerge.runner.loop import Candidate

        best = Candidate("c000003", 0, 0, [0.5], {"method": "linear"}, "d", {"t/bits_per_byte": 6.82}, -6.82)
        return SearchOutcome(best, [best], [GenerationSummary(round=0, generation=0, count=4)], reason)


def test_best_value_is_the_objectives_own_score_not_the_negated_fitness():
    sink = SearchStatusSink(None, {"metadata": {"namespace": "n", "name": "s"}}, {},  # type: ignore[arg-type]
                            shown_objective="t/bits_per_byte")
    sink.bind(_MinimisedRunner())  # type: ignore[arg-type]

    best = sink.progress()["best"]

    assert (best["value"], best["score"]) == ("6.82", "-6.82")  # kubectl's BEST shows the value
