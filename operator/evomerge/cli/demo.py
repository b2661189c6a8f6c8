"""`evomerge demo`: build an expert world on CPU, search its merges, and show what the search bought."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..catalogue.engines import DEFAULT_ENGINE
from ..catalogue.methods import reference_method
from ..runner.compare import EVOLVED, Comparison
from ..spec import MergeSearch
from ..spec.merge_search import PromotionSpec
from ..zoo.worlds import SMOLLM2, TOY

# The EvoGM release's setting (shared/reference/evogm.md §1): LoRA experts as task vectors, plain task arithmetic
# (the reference method over a base), one weight per expert in the box [-1, 1], no normalisation.
EVOGM_SETTING = {"method": reference_method(with_base=True).name, "granularity": "model", "normalize": False,
                 "bounds": {"weight": ["-1", "1"]}}


def demo_search(zoo, algorithm: str, seed: int, generations: int, population: int,
                engine: str = DEFAULT_ENGINE, world: str = TOY) -> MergeSearch:
    """The demo's MergeSearch: every expert of the world (distractors included), one objective per skill and per
    general-ability check. It evolves the weights of the comparison's reference method over the base, so its
    uniform-merge row is the same merge untuned: the toy zoo's full experts per layer group, the SmolLM2 world's
    LoRA experts in the EvoGM setting."""
    if world == SMOLLM2:
        experts = [{"name": n, "uri": str(p), "format": "lora"} for n, p in sorted(zoo.lora_adapters.items())]
        merge = EVOGM_SETTING
    else:
        experts = [{"name": name, "uri": str(path)} for name, path in sorted(zoo.experts.items())]
        merge = {"method": reference_method(with_base=True).name, "granularity": "layerGroups", "layerGroups": 2,
                 "bounds": {"weight": ["0", "1.5"]}}
    keys = zoo.skills + zoo.checks
    return MergeSearch.model_validate({
        "metadata": {"name": f"demo-{algorithm}"},
        "spec": {
            "baseModel": {"uri": str(zoo.base)},
            "experts": experts,
            "merge": merge,
            "search": {"algorithm": algorithm, "populationSize": population, "maxGenerations": generations, "rounds": 1,
                       "seed": seed},
            "objectives": [zoo.objective(k, "search") for k in keys],
            "heldOut": [zoo.objective(k, "heldout") for k in keys],
            "evaluation": {"engine": engine, "includePaths": [str(zoo.tasks_dir)], "device": "cpu", "batchSize": 256},
        },
    })


def comparison_table(rows: list[Comparison], search: MergeSearch) -> Table:
    """The demo's table: each row's scores, and whether the evolved merge's held-out difference from it is beyond
    noise (the paired test's p-value on the same held-out items; * marks p < 0.05)."""
    table = Table(title="experts vs uniform merge vs evolved merge (mean over objectives; per objective: search / held-out)",
                  caption="p: the evolved merge against the row on the same held-out items (exact McNemar; * p < 0.05); "
                  "bold: the best expert on held-out")
    table.add_column("model", no_wrap=True)
    table.add_column("search", justify="right")
    table.add_column("held-out", justify="right")
    table.add_column("p", justify="right", no_wrap=True)
    objectives, held_out = search.spec.objectives, search.spec.held_out
    for name in _column_names([o.task for o in objectives]):
        table.add_column(name, justify="right")
    experts = [r for r in rows if r.name.startswith("expert ")]
    best_expert = max(experts, key=lambda r: _mean(r.held_out, held_out)) if experts else None
    for row in rows:
        cells = [f"{row.search[o.key]:.2f} / {row.held_out[h.key]:.2f}" for o, h in zip(objectives, held_out)]
        test = row.evolved_test
        p_value = "—" if test is None else f"{test.p_value:.2g}" + ("*" if test.p_value < SIGNIFICANCE else "")
        style = "bold green" if row.name == EVOLVED else "bold" if row is best_expert else None
        table.add_row(row.name, f"{_mean(row.search, objectives):.3f}", f"{_mean(row.held_out, held_out):.3f}", p_value,
                      *cells, style=style)
    return table


SIGNIFICANCE = PromotionSpec().significance  # the demo marks a gain significant where the promotion gate would


def _column_names(tasks: list[str]) -> list[str]:
    """The objectives' tasks without their split suffix and the world's shared prefix (`smollm2_sum_words_search`
    → `sum_words`): a table of four or five skills must fit a terminal's width."""
    names = [task.rsplit("_", 1)[0] for task in tasks]
    shared = os.path.commonprefix(names)
    shared = shared[:shared.rfind("_") + 1] if len(names) > 1 else ""
    return [name[len(shared):] for name in names]


def _mean(scores: dict[str, float], objectives) -> float:
    return sum(scores[o.key] for o in objectives) / len(objectives)


def run_demo(world: str, size: str | None, seed: int, algorithm: str, generations: int, population: int, run_dir: Path,
             console: Console, quiet: bool = False, engine: str = DEFAULT_ENGINE) -> tuple[MergeSearch, list[Comparison]]:
    from ..merge.recipe import MergeRecipe
    from ..report.render import write_report
    from ..report.run_data import write_comparison
    from ..runner.compare import compare_recipes, reference_recipes
    from ..runner.local import SERVER_LOGS, evaluation_worker, run_local
    from ..zoo.worlds import build_world
    from .progress import TerminalSink, progress_lines

    zoo = build_world(world, seed=seed, size=size, default_size="small",
                      progress=None if quiet else (lambda line: console.print(f"{'zoo' if world == TOY else world}: {line}")))
    search = demo_search(zoo, algorithm, seed, generations, population, engine, world)
    sink = TerminalSink(console, quiet=quiet)
    with evaluation_worker(search.spec, run_dir / SERVER_LOGS) as worker:  # engine vllm: one server, then stopped
        try:
            result = run_local(search, run_dir, sink, worker=worker)
        finally:
            sink.close()
        best = MergeRecipe.from_dict(result.outcome.best.recipe)
        recipes = {**reference_recipes(best), EVOLVED: best}
        rows = compare_recipes(search, recipes, worker, progress=progress_lines(console, quiet))
    write_comparison(run_dir, rows)
    write_report(run_dir)
    return search, rows
