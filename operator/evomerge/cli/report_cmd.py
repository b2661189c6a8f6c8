"""`evomerge report` and `evomerge export`: look at a finished (or running) search, take its merge elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from .errors import console, fail
from .recipe_file import RecipeFileError, best_recipe_data

EXPORT_FORMATS = ("mergekit", "recipe")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("export")(export)


def report(
    run: Path = typer.Argument(..., help="Run directory written by `evomerge run` (spec.json, history.jsonl, summary.json)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Directory for report.html, report.md and the plots. Default: RUN/report."),
) -> None:
    """Render a run's report: a self-contained HTML page and a markdown summary with plots."""
    from ..report.render import write_report
    from ..report.run_data import RunDataError

    try:
        files = write_report(run, out)
    except RunDataError as exc:
        fail(str(exc))
        return
    console.print(f"report written to {files.html} and {files.markdown}", highlight=False)


def export(
    run: Path = typer.Argument(..., help="Run directory, or a recipe JSON (evomerge_recipe.json, or a run's summary.json)."),
    fmt: str = typer.Option("mergekit", "--format", "-f", help="mergekit: a mergekit-yaml config; recipe: evomerge's recipe JSON."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="File to write. Default: stdout."),
    num_layers: Optional[int] = typer.Option(
        None, "--num-layers", help="Model depth, when the base model's files are not on this machine (mergekit format)."
    ),
) -> None:
    """Write the best merge of a run in another tool's format: a mergekit config that rebuilds it, or the recipe JSON."""
    from ..merge.recipe import MergeRecipe
    from ..merge.mergekit_config import MergekitConfigError, mergekit_yaml

    if fmt not in EXPORT_FORMATS:
        fail(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    try:
        data = best_recipe_data(run)
    except RecipeFileError as exc:
        fail(str(exc))
        return
    if fmt == "recipe":
        text = json.dumps(data, indent=2) + "\n"
    else:
        recipe = MergeRecipe.from_dict(data)
        try:
            text = mergekit_yaml(_mergekit_config(recipe, num_layers))
        except MergekitConfigError as exc:
            fail(str(exc))
            return
    if out is None:
        print(text, end="")
    else:
        out.write_text(text)
        console.print(f"{fmt} config written to {out}", highlight=False)


def _mergekit_config(recipe, num_layers: Optional[int]) -> dict[str, Any]:
    """Depth from the base model (or first expert) on disk; --num-layers when it is elsewhere."""
    from ..models.uris import UriError, local_path
    from ..merge.mergekit_config import mergekit_config_for, recipe_to_mergekit

    try:
        if num_layers is not None:
            return recipe_to_mergekit(recipe, num_layers)
        return mergekit_config_for(recipe, local_path(recipe.base_uri or recipe.experts[0].uri))
    except UriError as exc:
        fail(f"{exc} — pass --num-layers to export without reading the model")
        raise  # unreachable: fail() exits
