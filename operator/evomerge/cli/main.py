"""`evomerge`: run searches locally, build the demo zoo, merge, and generate the CRDs."""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ..catalogue.contracts import INTERRUPTED, SEARCH_FAILED, SPEC_FILE, SUMMARY_FILE
from ..spec import MergeSearch, SpecError, load_resource
from ..catalogue.algorithms import ALGORITHM_NAMES, DEFAULT_ALGORITHM
from ..catalogue.engines import DEFAULT_ENGINE, ENGINES, LOCAL_ENGINES, SERVED_ENGINES
from .errors import console, fail

if TYPE_CHECKING:
    from ..evaluate.engines.served import SwappingWorker
    from ..merge.recipe import MergeRecipe

app = typer.Typer(
    name="evomerge",
    help="Evolutionary search for LLM merge recipes — on Kubernetes or on this machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Where `evomerge crds` writes by default: the repository's crds/ and the chart's copies, relative to the
# working directory (an installed package has no checkout beside it).
CRD_DIRS = (Path("crds"), Path("charts") / "evomerge" / "crds")


@app.command()
def run(
    spec: Optional[Path] = typer.Argument(None, help="MergeSearch YAML (a full resource, or just its spec); optional with --resume."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where history, summary and the merge go. Default: runs/<name>."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory with the spec pinned there."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    as_json: bool = typer.Option(False, "--json", help="Print the final summary as JSON on stdout."),
    no_export: bool = typer.Option(False, "--no-export", help="Do not write the merged checkpoint."),
    no_compare: bool = typer.Option(
        False, "--no-compare", help="Skip scoring each expert alone and the uniform merge for the report's comparison table."
    ),
) -> None:
    """Run a search on this machine. Ctrl-C (or SIGTERM) stops it; `--resume RUN_DIR` (or the same --run-dir)
    continues it."""
    _stop_on_sigterm()
    if resume is not None:
        if run_dir is not None and run_dir.resolve() != resume.resolve():
            fail("--resume names the run directory; leave out --run-dir (or give the same directory)")
        search = _load_search(spec) if spec is not None else _load_pinned(resume)
        directory = resume
    elif spec is None:
        fail("give a SPEC to start a search, or --resume RUN_DIR to continue one")
        return
    else:
        search = _load_search(spec)
        directory = run_dir or Path("runs") / search.metadata.name
    _run_and_report(search, directory, quiet, as_json, export=not no_export, compare=not no_compare)



@app.command()
def demo(
    world: str = typer.Option("toy", "--world", help="toy (the tiny zoo) or smollm2 (SmolLM2-135M's LoRA experts in "
                              "the EvoGM setting; its first build takes about 30 minutes)."),
    size: Optional[str] = typer.Option(None, "--size", help="The toy zoo's size: nano (seconds, for tests) or small (the real demo; the default)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the world and of the search."),
    algorithm: str = typer.Option(DEFAULT_ALGORITHM, "--algorithm", help=f"Optimizer: {', '.join(ALGORITHM_NAMES)}."),
    generations: int = typer.Option(4, "--generations", help="Generations of the search."),
    population: int = typer.Option(8, "--population", help="Candidates per generation."),
    run_dir: Path = typer.Option(Path("runs/demo"), "--run-dir", help="Where the demo search writes its run."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print the final table."),
    engine: Optional[str] = typer.Option(None, "--engine", help=f"Engine: {' or '.join(LOCAL_ENGINES)}; default: the "
                                         "world's own (the toy zoo scores in-process, SmolLM2 through vLLM)."),
) -> None:
    """Build an expert world on CPU (cached), search its merges, and compare experts, uniform and evolved merges."""
    from ..zoo.worlds import DEMO_ENGINES, TOY, check_world
    from .demo import comparison_table, run_demo

    try:
        check_world(world, size)
    except ValueError as err:
        fail(f"--world / --size: {err}")
    engine = engine or DEMO_ENGINES[world]
    if engine not in LOCAL_ENGINES:
        fail(f"--engine must be {' or '.join(LOCAL_ENGINES)}")
    label = (size or "small") if world == TOY else world
    _stop_on_sigterm()
    search, rows = run_demo(world, size, seed, algorithm, generations, population,
                            run_dir / f"{label}-{algorithm}-{seed}", console, quiet, engine)
    Console().print(comparison_table(rows, search))


@app.command()
def crds(
    out: Optional[list[Path]] = typer.Option(
        None, "--out", help="Directory to write the CRD YAML into (repeatable). Default: crds/ and charts/evomerge/crds/ of the working directory (the repository root)."
    ),
    check: bool = typer.Option(False, "--check", help="Exit 1 if the files on disk differ from the spec types."),
) -> None:
    """Write (or check) the CustomResourceDefinitions generated from the spec types."""
    from ..spec.crd import KINDS, crd_file_name, render_crd

    directories = out or list(CRD_DIRS)
    if not out and not all(d.is_dir() for d in CRD_DIRS):
        fail(f"no {' and '.join(map(str, CRD_DIRS))} here — run `evomerge crds` from the repository root, or pass --out DIR")
    stale = []
    for kind in KINDS:
        text = "# Generated by `evomerge crds` from evomerge.spec — do not edit.\n" + yaml.safe_dump(
            render_crd(kind), sort_keys=False, width=120
        )
        for directory in directories:
            path = directory / crd_file_name(kind)
            if check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
            else:
                directory.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                console.print(f"wrote {path}")
    if stale:
        fail(f"stale CRDs (run `evomerge crds`): {', '.join(stale)}", code=1)


@app.command()
def merge(
    recipe: Path = typer.Argument(
        ..., help="A mergekit config (config.yml), a recipe JSON (evomerge_recipe.json), or a run directory or its summary.json (its best merge)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the merged checkpoint."),
    fmt: str = typer.Option(
        "auto", "--format", "-f",
        help="What RECIPE is: mergekit (a mergekit-yaml config: the same tensors as mergekit 0.1.5 writes), recipe "
             "(evomerge's JSON, or a run), or auto (mergekit for .yml / .yaml files).",
    ),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickle checkpoints (they can run code)."),
    shard_size: Optional[str] = typer.Option(
        None, "--shard-size", help="Largest safetensors shard, e.g. 5GB, 500MiB or 2000000000 (default: 2GiB)."
    ),
    adapter: bool = typer.Option(
        False, "--adapter",
        help="Write the candidate as one combined LoRA adapter over the base (PEFT layout) instead of a merged "
             "checkpoint: linear (normalize) or task_arithmetic over LoRA experts.",
    ),
) -> None:
    """Merge checkpoints by a recipe and write a standard Hugging Face checkpoint (or, with --adapter, a LoRA adapter)."""
    from ..merge.adapter import recipe_adapter
    from ..merge.apply import RecipeError
    from ..merge.export import DEFAULT_SHARD_BYTES, export_merge
    from ..merge.inputs import open_recipe_inputs
    from ..merge.layer_path import LayerPathError
    from ..models.checkpoint import CheckpointError
    from ..models.uris import UriError
    from .progress import export_progress

    parsed = _read_recipe(recipe, fmt)
    shard_bytes = _parse_size(shard_size) if shard_size is not None else DEFAULT_SHARD_BYTES
    start = time.monotonic()
    try:
        base, experts = open_recipe_inputs(parsed, allow_pickle or None)
        if adapter:
            recipe_adapter(parsed, base, experts, out)
        else:
            with export_progress(console) as progress:
                export_merge(parsed, base, experts, out, shard_bytes, progress)
    except (UriError, CheckpointError, RecipeError, LayerPathError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"could not merge into {out}: {exc}")
    if adapter:
        console.print(f"combined LoRA adapter written to {out} (serve it over {parsed.base_uri})")
        return
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    console.print(f"merged model written to {out} ({size / 1e9:.2f} GB in {time.monotonic() - start:.1f} s)")


_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _parse_size(text: str) -> int:
    """A byte count as people write it (5GB, 500MiB, 2e9): decimal units are powers of 10, binary ones of 2."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", text, re.IGNORECASE)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _SIZE_UNITS or float(match.group(1)) * _SIZE_UNITS[unit] < 1:
        fail(f"--shard-size {text!r}: give a positive size such as 5GB, 500MiB or 2000000000")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


MERGE_FORMATS = ("auto", "mergekit", "recipe")


def _read_recipe(path: Path, fmt: str) -> MergeRecipe:
    """The recipe of a mergekit config, a recipe file or a run (its best), or a clear error naming what is wrong."""
    from ..merge.recipe import MergeRecipe
    from ..merge.mergekit_config import MergekitConfigError, read_mergekit_file
    from .recipe_file import RecipeFileError, best_recipe_data

    if fmt not in MERGE_FORMATS:
        fail(f"--format must be one of {', '.join(MERGE_FORMATS)}, got {fmt!r}")
    if fmt == "mergekit" or (fmt == "auto" and path.suffix.lower() in (".yml", ".yaml")):
        try:
            return read_mergekit_file(path)
        except MergekitConfigError as exc:
            fail(str(exc))
    try:
        return MergeRecipe.from_dict(best_recipe_data(path))
    except RecipeFileError as exc:
        fail(str(exc))
    except KeyError as exc:
        fail(f"{path}: field {exc.args[0]!r} is missing — write recipes as `evomerge export --format recipe` does")
    except (TypeError, ValueError, AttributeError) as exc:
        fail(f"{path}: {exc}")


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="A model directory (config.json, safetensors, tokenizer)."),
    task: list[str] = typer.Option(..., "--task", "-t", help="lm-eval task, optionally TASK:METRIC (repeatable)."),
    include_path: list[Path] = typer.Option([], "--include-path", help="Directory of custom lm-eval task YAMLs."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Items per task, subsampled with --seed."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subsample (use the search's to compare numbers)."),
    engine: str = typer.Option(DEFAULT_ENGINE, "--engine", help=f"{' or '.join(ENGINES)} (served ones need --url)."),
    url: Optional[str] = typer.Option(None, "--url", help=f"Server URL for --engine {' or '.join(SERVED_ENGINES)}."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (transformers engine)."),
) -> None:
    """Score one model on lm-eval tasks, the way a search scores its candidates; prints JSON."""
    from ..evaluate.model import evaluate_model
    from ..evaluate.tasks import TaskError
    from ..spec.merge_search import Objective

    objectives = []
    for item in task:
        name, _, metric = item.partition(":")
        objectives.append(Objective(task=name, metric=metric or "acc", limit=limit))
    try:
        scores = evaluate_model(model, objectives, [str(p) for p in include_path],
                                {"engine": engine, "url": url, "device": device}, seed=seed)
    except (TaskError, ValueError, OSError) as exc:
        fail(str(exc))
    print(json.dumps(scores, indent=2))


def _load_search(path: Path) -> MergeSearch:
    try:
        return load_resource(path, MergeSearch)
    except SpecError as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits


def _load_pinned(run_dir: Path) -> MergeSearch:
    """The search of a run directory from its pinned spec.json (named after the directory)."""

    pinned = run_dir / SPEC_FILE
    if not pinned.exists():
        fail(f"--resume {run_dir}: no {SPEC_FILE} there — not a run directory of `evomerge run`")
    name = re.sub(r"[^a-z0-9-]+", "-", run_dir.resolve().name.lower()).strip("-")[:63].strip("-") or "resumed"
    try:
        return MergeSearch.model_validate({"metadata": {"name": name}, "spec": json.loads(pinned.read_text())})
    except ValueError as exc:
        fail(f"--resume {run_dir}: {SPEC_FILE} is not a valid spec of this evomerge version: {exc}")
        raise  # unreachable: fail() exits


def _stop_on_sigterm() -> None:
    """SIGTERM (kill, timeout, a service manager) stops a local search as Ctrl-C does: its vLLM server stops and the
    merged weights it was reading leave /dev/shm, where Python's default death left 0.5-1.6 GB behind per run. Only
    the local commands: the cluster's pods keep the default, which their restart policies are built around."""
    def interrupt(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _run_and_report(search: MergeSearch, run_dir: Path, quiet: bool, as_json: bool, export: bool = True,
                    compare: bool = True) -> None:
    from ..evaluate.tasks import TaskError
    from ..models.checkpoint import CheckpointError
    from ..models.uris import UriError
    from ..runner.local import SERVER_LOGS, evaluation_worker, run_local
    from ..runner.loop import HistoryMismatch, SearchFailed
    from .progress import TerminalSink

    sink = TerminalSink(console, quiet=quiet or as_json)
    with ExitStack() as stack:  # engine vllm: one server for the search and the comparison, stopped on any exit
        try:
            worker = stack.enter_context(evaluation_worker(search.spec, run_dir / SERVER_LOGS))
            result = run_local(search, run_dir, sink, export=export, worker=worker)
        except (UriError, CheckpointError, TaskError, HistoryMismatch, ValueError) as exc:
            sink.close()
            fail(str(exc))
        except SearchFailed as exc:
            sink.close()
            _stop(run_dir, quiet or as_json, f"[red]error:[/red] search failed: {exc}", SEARCH_FAILED)
        except KeyboardInterrupt:
            sink.close()
            _stop(run_dir, quiet or as_json, f"interrupted — resume with: evomerge run --resume {run_dir}", INTERRUPTED)
        sink.close()
        if compare and result.outcome.best is not None:
            try:
                _write_comparison(search, run_dir, result.outcome.best.recipe, quiet or as_json, worker)
            except KeyboardInterrupt:  # the search is whole: nothing to resume, only the comparison is left out
                _stop(run_dir, quiet or as_json, f"interrupted while comparing the evolved merge with the experts — "
                      f"the search is finished ({run_dir / SUMMARY_FILE}); the report leaves the comparison out",
                      INTERRUPTED)
    _write_report(run_dir, quiet or as_json)
    if as_json:
        print((run_dir / SUMMARY_FILE).read_text())
        return
    if not quiet:
        _print_summary(result)


def _write_comparison(search: MergeSearch, run_dir: Path, best: dict, quiet: bool,
                      worker: "SwappingWorker | None" = None) -> None:
    """Each expert alone and the uniform merge beside the evolved one, on both splits: the report's proof
    that the search paid off. A layer path has no uniform merge to compare with."""
    from ..merge.recipe import MergeRecipe
    from ..report.run_data import write_comparison
    from ..runner.compare import EVOLVED, compare_recipes, reference_recipes
    from .progress import progress_lines

    recipe = MergeRecipe.from_dict(best)
    if recipe.layer_path is not None:
        return
    write_comparison(run_dir, compare_recipes(search, {**reference_recipes(recipe), EVOLVED: recipe}, worker,
                                              progress=progress_lines(console, quiet)))


def _stop(run_dir: Path, quiet: bool, message: str, code: int) -> NoReturn:
    """End a failed or interrupted run: its message first, then its report (which draws unfinished runs too), and
    its own exit code whatever the report does."""
    console.print(message, highlight=False, soft_wrap=True)
    try:
        _write_report(run_dir, quiet)
    except KeyboardInterrupt:  # another Ctrl-C while the report draws: skip the report, not the exit code
        pass
    raise typer.Exit(code)


def _write_report(run_dir: Path, quiet: bool) -> None:
    """The run report; a failure to draw it is a warning, never a failed search."""
    from ..report.render import write_report

    try:
        files = write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 — the run's files are in place and its outcome stands without a report
        console.print(f"[yellow]warning:[/yellow] the report could not be written: {exc}; retry with `evomerge report {run_dir}`",
                      highlight=False, soft_wrap=True)
        return
    if not quiet:
        console.print(f"report: {files.html}", highlight=False, soft_wrap=True)


def _print_summary(result) -> None:
    outcome = result.outcome
    out = Console()
    table = Table(title=f"search finished: {outcome.stop_reason}")
    table.add_column("")
    table.add_column("value")
    table.add_row("evaluations", f"{outcome.evaluations} ({outcome.failed} failed)")
    if outcome.best is not None:
        table.add_row("best fitness", f"{outcome.best.fitness:.4f}")
        for key, value in (outcome.best.scores or {}).items():
            table.add_row(f"  search {key}", f"{value:.4f}")
        for key, value in result.held_out.items():
            table.add_row(f"  held-out {key}", f"{value:.4f}")
        table.add_row("recipe", json.dumps(_compact_recipe(outcome.best.recipe)))
    table.add_row("merged model", str(result.merged_dir) if result.merged_dir else "—")
    table.add_row("run directory", str(result.run_dir))
    out.print(table)


def _compact_recipe(recipe: dict) -> dict:
    return {
        "method": recipe["method"],
        "experts": {
            e["name"]: {g: {k: round(v, 3) for k, v in vals.items()} for g, vals in e["params"].items()}
            for e in recipe["experts"]
        },
    }


# Commands that live in their own modules; imports stay light (torch loads inside the commands).
from .cluster import register as register_cluster  # noqa: E402
from .report_cmd import register as register_report  # noqa: E402
from .zoo_cmd import zoo_app  # noqa: E402

app.add_typer(zoo_app, name="zoo")
register_report(app)
register_cluster(app)


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
