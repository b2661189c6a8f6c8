"""EvoGM: the released algorithm's shape, multi-round basis shifts composed back to the experts, async mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evomerge.search.cmaes import injected
from evomerge.search.evogm import CMAHostedEvoGM, EvoGM, Member, RoundCoordinates, generator

from .problems import (
    asked,
    best,
    drive,
    genome,
    optimizer,
    run_behaviour_checks,
    run_failure_checks,
    sphere,
)


def paper(*args, **fields) -> EvoGM:
    """The released algorithm (`evogm.variant: paper`), with the test's other EvoGM fields."""
    return optimizer("evogm", *args, evogm={"variant": "paper", **fields.pop("evogm", {})}, **fields)


def test_generators_have_the_released_shape():
    net = generator(10, [128, 256, 256, 256, 128])
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(10, 128), (128, 256), (256, 256), (256, 256), (256, 128), (128, 10)]
    assert isinstance(net[-1], torch.nn.Tanh)
    assert sum(p.numel() for p in net.parameters()) == 200_202  # "about 200 k per generator at N = 10"


def test_deterministic_and_in_bounds():
    run_behaviour_checks("evogm", rounds=2)


def test_failed_evaluations_never_win():
    run_failure_checks("evogm", rounds=2)
    opt = optimizer("evogm", populationSize=10)
    vectors = opt.ask(10)
    fitness = [None if i % 2 else float(i) for i in range(10)]  # the failures would be the best if taken as scores
    opt.tell(vectors, fitness)
    winners, losers = opt.split()
    assert [m.fitness for m in winners] == [8.0, 6.0, 4.0]  # max(1, ⌊0.3·10⌋) successes, best first
    assert sum(m.fitness is None for m in losers) == 5
    assert all(m.fitness is not None for m in opt.population[:5])


def test_winner_and_loser_sets_follow_the_paper():
    opt = optimizer("evogm", populationSize=20)
    vectors = opt.ask(20)
    opt.tell(vectors, [float(i) for i in range(20)])
    winners, losers = opt.split()
    assert (len(winners), len(losers)) == (6, 14)  # |H| = 20 → 6 / 14 (reference §2.1)
    assert min(m.fitness for m in winners) > max(m.fitness for m in losers)


def test_initial_population_is_experts_uniform_mix_then_random():
    g = genome(experts=4, weight=(-1.0, 1.0))
    opt = paper(g, populationSize=8)
    first = opt.ask(8)
    assert np.array_equal(first[:4], np.eye(4))
    assert np.allclose(first[4], 0.25)
    assert len({row.tobytes() for row in first[5:]}) == 3 and np.all(np.abs(first[5:]) <= 1.0)


def test_round_coordinates_put_weight_zero_at_the_generators_centre():
    """The released code searches λ ∈ [-1, 1] directly, so y = 0 (tanh's centre) is "expert left out"; with a
    [0, h] box an affine map would put weight 0 at y = -1, tanh's asymptote, which G₊ never reaches."""
    for low, high in ((0.0, 1.0), (0.0, 1.5), (-1.0, 1.0), (-0.5, 2.0)):
        g = genome(experts=3, weight=(low, high))
        c = RoundCoordinates(g, np.eye(3)[None])
        assert np.array_equal(c.effective(np.zeros(3)), np.clip(np.zeros(3), low, high))
        scale = max(abs(low), abs(high))
        y = np.array([1.0, 0.5, -0.25])
        assert np.allclose(c.effective(y), np.clip(scale * y, low, high))
        assert np.allclose(c.from_genes(np.array([1.0, 0.0, low])), np.array([1.0, 0.0, low]) / scale)
    released = RoundCoordinates(genome(experts=3, weight=(-1.0, 1.0)), np.eye(3)[None])
    y = np.array([0.3, -0.7, 0.05])
    assert np.array_equal(released.effective(y), y)  # the release's λ = y, bit for bit


def test_random_members_leave_experts_out_with_a_zero_lower_bound():
    g = genome(experts=6, weight=(0.0, 1.5))
    first = paper(g, populationSize=20).ask(20)
    assert np.array_equal(first[:6], np.eye(6))  # each expert alone, at weight 1
    randoms = first[7:]
    assert 0.3 < np.mean(randoms == 0.0) < 0.7  # y ≤ 0 is weight 0: about half of each random mix's experts


def test_seeds_join_the_first_population():
    g = genome(experts=4)
    seed = np.array([0.1, 0.2, 0.3, 0.4])
    first = optimizer("evogm", g, seeds=seed[None, :]).ask(8)
    assert np.allclose(first[5], seed)


def test_offspring_come_from_the_loser_to_winner_generator_and_survivors_are_elitist():
    g = genome(experts=4)
    opt = paper(g, populationSize=8, maxGenerations=3)
    objective = sphere(np.array([0.3, 0.1, 0.2, 0.0]))
    initial = opt.ask(8)
    opt.tell(initial, [objective(v) for v in initial])
    parents = np.stack([m.y for m in opt.population])
    offspring = opt.ask(8)
    with torch.no_grad():
        expected = opt.lose2win(torch.tensor(parents, dtype=torch.float32)).double().numpy()
    assert np.allclose(offspring, expected, atol=1e-6)  # round 0: the basis is the identity, λ_eff = λ
    fitness = [objective(v) for v in offspring]
    opt.tell(offspring, fitness)
    pooled = sorted([objective(v) for v in initial] + fitness, reverse=True)
    assert [m.fitness for m in opt.population] == pooled[:8]


def test_next_round_experts_are_the_elites_composed_back_to_the_originals():
    g = genome(experts=3, groups=("embed", "blocks0", "head"), weight=(-1.0, 1.0))
    opt = paper(g, populationSize=6, maxGenerations=2, rounds=2, evogm={"topK": 2})
    log = drive(opt, sphere(np.linspace(-0.4, 0.6, g.dim)), 2)
    assert opt.round == 1
    fitness = [f for _, fs in log for f in fs]
    order = sorted(range(len(fitness)), key=lambda i: (-fitness[i], i))
    elites = asked(log)[order[:2]]  # the first round's two best candidates, as evaluated
    index = g.param_index("weight")
    basis = opt.coordinates.basis
    assert basis.shape == (3, 2, 3)  # layer groups × topK elites × original experts
    for k in range(2):
        assert np.array_equal(basis[:, k, :], elites[k][index])
    second = opt.ask(6)
    assert np.array_equal(second[0], elites[0]) and np.array_equal(second[1], elites[1])  # one-hot = the elite itself
    for row, member_y in zip(second, opt._initial):
        lam = opt.coordinates.lam(member_y)  # per-round coefficients over the elites
        assert np.allclose(row[index], np.clip(np.einsum("gk,gkn->gn", lam, basis), -1.0, 1.0), atol=1e-12)


def test_elites_are_deduplicated_and_independent():
    g = genome(experts=3)
    opt = paper(g, populationSize=6, maxGenerations=1, rounds=2)
    vectors = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.1, 0.0], [0.3, 0.3, 0.3]])
    opt.history = [Member(opt.coordinates.from_genes(v), v, 5.0 - i, i) for i, v in enumerate(vectors)]
    # the duplicate (1) and the multiple of the best (2) would make the next basis degenerate
    assert [m.order for m in opt.elites()] == [0, 3, 4]


def test_density_genes_stay_per_original_expert_across_rounds():
    g = genome(experts=3, evolve=("weight", "density"), method="ties", weight=(0.0, 1.0))
    opt = paper(g, populationSize=6, maxGenerations=2, rounds=3)
    log = drive(opt, sphere(np.array([0.4, 0.2, 0.3, 0.5, 0.6, 0.7])), 6)
    everything = asked(log)
    assert np.all(everything >= g.lower) and np.all(everything <= g.upper)
    assert opt.round == 2 and opt.finished
    assert opt.ask(6).shape == (0, g.dim)  # all rounds spent


def test_makes_progress_and_beats_random_search_at_equal_budget():
    g = genome(experts=6)
    objective = sphere(np.array([0.3, -0.2, 0.5, 0.1, 0.0, 0.25]))
    random = best(drive(optimizer("random", g, populationSize=12), objective, 8))
    released = drive(paper(g, populationSize=12, maxGenerations=4, rounds=2), objective, 8)
    jittered = drive(paper(g, populationSize=12, maxGenerations=4, rounds=2, evogm={"jitter": 0.15}), objective, 8)
    assert best(released) > max(released[0][1]) and best(released) > random
    assert best(jittered) > best(released) + 0.1  # jitter keeps the offspring from collapsing onto one point


def test_async_waits_for_results_and_for_the_round_to_finish():
    opt = paper(populationSize=4, maxGenerations=2, rounds=2, mode="async")
    objective = sphere(np.full(4, 0.2))
    initial = np.concatenate([opt.ask(1) for _ in range(4)])
    assert opt.ask(1).shape[0] == 0  # nothing told yet: no offspring can be proposed
    opt.tell(initial[:1], [objective(initial[0])])
    first = opt.ask(1)
    more = opt.ask(3)
    assert len(first) == 1 and len(more) == 3  # offspring while evaluations are still in flight
    assert opt.ask(1).shape[0] == 0  # the round's 8 candidates are out: round 2 needs all their results
    out = np.concatenate([initial[1:], first])
    opt.tell(out, [objective(v) for v in out])
    assert opt.round == 0 and opt.ask(1).shape[0] == 0
    opt.tell(more, [objective(v) for v in more])
    assert opt.round == 1 and opt.ask(1).shape[0] == 1


def test_per_iteration_reinit_trains_fresh_generators():
    a = drive(paper(evogm={"generatorReinit": "perIteration"}), sphere(np.zeros(4)), 3)
    b = drive(paper(), sphere(np.zeros(4)), 3)
    assert np.array_equal(a[0][0], b[0][0]) and np.array_equal(a[1][0], b[1][0])  # same first training
    assert not np.array_equal(a[2][0], b[2][0])  # then fresh weights versus warm ones


def test_evogm_is_registered():
    assert isinstance(optimizer("evogm"), EvoGM)


def _count_adam_steps(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    steps: list[None] = []
    original = torch.optim.Adam.step

    def counted(self, *args, **kwargs):
        steps.append(None)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    return steps


def test_generators_train_training_steps_per_iteration_and_start_afresh_each_round(monkeypatch: pytest.MonkeyPatch):
    steps = _count_adam_steps(monkeypatch)
    opt = paper(populationSize=8, maxGenerations=3, rounds=2, evogm={"trainingSteps": 7})
    objective = sphere(np.full(4, 0.2))
    before_each_tell, generators = [], []
    for _ in range(6):
        vectors = opt.ask(8)
        before_each_tell.append(len(steps))
        generators.append(opt.lose2win)
        opt.tell(vectors, [objective(v) for v in vectors])
    # round 1: none before the first results, then 7 per iteration; round 2's initial population trains nothing
    assert before_each_tell == [0, 7, 14, 14, 21, 28]
    assert generators[1] is generators[2] and generators[4] is generators[5]  # warm within a round (reference §2.3)
    assert generators[4] is not generators[2]  # fresh generators for the next round


def test_async_training_keeps_pace_with_results_not_with_asks(monkeypatch: pytest.MonkeyPatch):
    steps = _count_adam_steps(monkeypatch)
    opt = paper(populationSize=4, maxGenerations=3, rounds=1, mode="async", evogm={"trainingSteps": 8})
    objective = sphere(np.full(4, 0.2))
    initial = np.concatenate([opt.ask(1) for _ in range(4)])
    opt.tell(initial[:2], [objective(v) for v in initial[:2]])
    opt.ask(1)
    assert len(steps) == 4  # trainingSteps × 2 results / populationSize 4
    opt.ask(2)
    assert len(steps) == 4  # more asks, no new results: no more training
    opt.tell(initial[2:], [objective(v) for v in initial[2:]])
    opt.ask(1)
    assert len(steps) == 8


def _cycle_errors(opt: EvoGM) -> tuple[float, float]:
    """How far G₋ ∘ G₊ is from the identity on the losers, and G₊ ∘ G₋ on the winners (the two cycle terms)."""
    winners, losers = opt.split()
    w = torch.tensor(np.stack([m.y for m in winners]), dtype=torch.float32)
    l = torch.tensor(np.stack([m.y for m in losers]), dtype=torch.float32)
    with torch.no_grad():
        return (float(torch.nn.functional.mse_loss(opt.win2lose(opt.lose2win(l)), l)),
                float(torch.nn.functional.mse_loss(opt.lose2win(opt.win2lose(w)), w)))


def _trained_once(**evogm) -> tuple[EvoGM, dict[str, torch.Tensor]]:
    """An EvoGM after its first iteration's training, and its G₋ weights before that training."""
    opt = paper(populationSize=12, maxGenerations=2, rounds=1, evogm={"trainingSteps": 300, **evogm})
    objective = sphere(np.array([0.3, -0.2, 0.5, 0.1]))
    initial = opt.ask(12)
    opt.tell(initial, [objective(v) for v in initial])
    opt._build_generators(0)  # what the first ask would build; the ask then trains these very nets
    fresh = {k: v.clone() for k, v in opt.win2lose.state_dict().items()} if opt.win2lose is not None else {}
    opt.ask(12)
    assert isinstance(opt, EvoGM)
    return opt, fresh


def test_the_cycle_loss_is_what_trains_the_winner_to_loser_generator():
    cycled, _ = _trained_once()
    uncycled, fresh = _trained_once(cycleScale=0)
    # without the cycle terms nothing reaches G₋: Adam leaves weights with zero gradients where they were
    assert all(torch.equal(fresh[k], v) for k, v in uncycled.win2lose.state_dict().items())
    with_cycle, without = _cycle_errors(cycled), _cycle_errors(uncycled)
    assert with_cycle[0] < 0.25 * without[0] and with_cycle[1] < 0.25 * without[1]


def test_single_mode_trains_the_loser_to_winner_generator_alone():
    single, _ = _trained_once(generatorMode="single")
    assert single.win2lose is None and single.lose2win is not None
    dual, _ = _trained_once()
    assert not all(torch.equal(a, b) for a, b in zip(single.lose2win.state_dict().values(), dual.lose2win.state_dict().values()))


# ---- the default variant: EvoGM hosted by CMA-ES ------------------------------------------------------------


def test_the_default_variant_is_cma_hosted_and_paper_is_the_released_algorithm():
    assert type(optimizer("evogm")) is CMAHostedEvoGM
    assert type(paper()) is EvoGM
    run_behaviour_checks("evogm", rounds=2, evogm={"variant": "paper"})
    run_failure_checks("evogm", rounds=2, evogm={"variant": "paper"})


def test_first_generation_is_the_known_members_then_cma_es_samples_around_the_uniform_mix():
    """Each expert alone and the uniform mix, as the paper; the rest of the first generation is CMA-ES's own samples,
    not the paper's random mixes of the whole box (they told CMA-ES nothing near its mean and cost a tenth of 160)."""
    g = genome(experts=4, weight=(0.0, 1.5))
    hosted, released = optimizer("evogm", g), paper(g)
    ours, theirs = hosted.ask(8), released.ask(8)
    assert np.array_equal(ours[:5], theirs[:5])
    assert not np.any(np.all(ours[5:] == theirs[5:], axis=1))
    assert [hosted._slots[order] for order in range(5, 8)] == [(0, False)] * 3  # CMA-ES's samples, told as they are
    assert np.allclose(hosted.cma.mean, hosted.home.from_genes(np.full(4, 0.25)))
    assert hosted.step_sizes == [pytest.approx(0.15)]


def test_injected_points_are_clipped_in_mahalanobis_norm_before_cma_es_learns_from_them():
    opt = optimizer("evogm", genome(experts=6))
    mean, sigma, limit = opt.cma.mean, opt.step_sizes[0], np.sqrt(6) + 2 * 6 / 8
    near = mean + sigma * np.full(6, 0.5)
    assert np.array_equal(injected(opt.cma, near), near)  # within reach of CMA-ES's own samples: told as it is
    far = mean + sigma * np.array([10.0, 0, 0, 0, 0, 0])
    told = injected(opt.cma, far)
    assert np.isclose(np.linalg.norm(told - mean) / sigma, limit)  # C = I at the start: plain distance
    assert np.allclose((told - mean) / np.linalg.norm(told - mean), [1, 0, 0, 0, 0, 0])


def test_a_share_of_each_generation_comes_from_the_winner_generator():
    g = genome(experts=4)
    objective = sphere(np.array([0.3, 0.1, 0.2, 0.0]))
    rows = {}
    for share in (0.0, 0.5):
        opt = optimizer("evogm", g, populationSize=8, evogm={"injection": share})
        drive(opt, objective, 1)
        rows[share] = opt.ask(8)
        with torch.no_grad():
            proposed = opt.lose2win(torch.tensor(np.stack([m.y for m in opt.history]), dtype=torch.float32)) if opt.lose2win else None
    # the same CMA-ES samples (same seed, same first generation) except where G₊ rewrote them: the first half
    assert np.array_equal(rows[0.0][4:], rows[0.5][4:])
    assert not np.any(np.all(rows[0.0][:4] == rows[0.5][:4], axis=1))
    assert proposed is not None  # the generators were trained before proposing


def test_step_size_follows_the_remaining_distance_and_offspring_do_not_collapse():
    g = genome(experts=6)
    objective = sphere(np.array([0.3, -0.2, 0.5, 0.1, 0.0, 0.25]))
    hosted = optimizer("evogm", g, populationSize=12, maxGenerations=4, rounds=2)
    released = paper(g, populationSize=12, maxGenerations=4, rounds=2)
    a, b = drive(hosted, objective, 8), drive(released, objective, 8)
    assert best(a) > best(b)
    spread = lambda log, i: float(log[i][0].std(axis=0).mean())  # noqa: E731
    assert spread(a, 3) > 2 * spread(b, 3)  # the paper's G₊ contracts within a round; CMA-ES's step does not collapse
    assert len(hosted.step_sizes) == 1 + 8
    # σ follows the remaining distance: the same search with its optimum at its start narrows its step, and ends with
    # a step about a third of the one still travelling
    near = optimizer("evogm", g, populationSize=12, maxGenerations=4, rounds=2)
    drive(near, sphere(np.full(6, 1 / 6)), 8)
    assert near.step_sizes[-1] < near.step_sizes[0] and 2 * near.step_sizes[-1] < hosted.step_sizes[-1]


def test_later_rounds_start_from_the_elites_without_evaluating_them_again():
    g = genome(experts=3, groups=("embed", "blocks0", "head"), weight=(-1.0, 1.0))
    opt = optimizer("evogm", g, populationSize=6, maxGenerations=2, rounds=2, evogm={"topK": 2})
    log = drive(opt, sphere(np.linspace(-0.4, 0.6, g.dim)), 2)
    assert opt.round == 1
    elites = [m.x for m in opt.promoted]
    index = g.param_index("weight")
    assert all(np.array_equal(opt.coordinates.basis[:, k, :], elites[k][index]) for k in range(2))
    assert [m.fitness for m in opt.history] == [m.fitness for m in opt.promoted]  # the round's first history
    generation = opt.cma.generation
    second = opt.ask(6)
    assert not any(np.array_equal(row, e) for row in second for e in elites)  # the paper asks them again
    assert opt.cma.generation == generation  # CMA-ES carries on across rounds unless restartSigma is set
    restarted = optimizer("evogm", g, populationSize=6, maxGenerations=2, rounds=2, evogm={"topK": 2, "restartSigma": 0.1})
    drive(restarted, sphere(np.linspace(-0.4, 0.6, g.dim)), 2)
    assert restarted.cma.generation == 0 and restarted.step_sizes[-1] == 0.1
    assert np.allclose(restarted.cma.mean, restarted.home.from_genes(restarted.best.x))


def test_cma_hosted_async_never_waits_for_a_generation_and_injects_late_results():
    opt = optimizer("evogm", populationSize=4, maxGenerations=3, rounds=2, mode="async")
    objective = sphere(np.full(4, 0.2))
    first = opt.ask(6)
    assert len(first) == 6  # the first population and two samples more, before any result
    opt.tell(first[:5], [objective(v) for v in first[:5]])
    assert opt.cma.generation == 1  # every populationSize results are one CMA generation
    late = opt._slots[5]
    assert late[0] == 0  # sampled before that update: told as an injected point
    opt.tell(first[5:], [objective(v) for v in first[5:]])
    rest = opt.ask(20)
    assert len(rest) == 12 - 6  # then the round's budget: a round ends only when all its results are back
    opt.tell(rest, [objective(v) for v in rest])
    assert opt.round == 1 and opt.ask(1).shape[0] == 1
