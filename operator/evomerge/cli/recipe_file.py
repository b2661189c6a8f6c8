"""Reading the recipe a command acts on: a run directory, its summary.json, or a recipe JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..catalogue.contracts import SUMMARY_FILE


class RecipeFileError(ValueError):
    """What is wrong with the file, naming it and what would fix it."""


def best_recipe_data(run: Path) -> dict[str, Any]:
    """The recipe (as plain data) of a run directory or its summary.json (the best candidate's), or of a recipe file."""
    source = run / SUMMARY_FILE if run.is_dir() else run
    if run.is_dir() and not source.exists():
        raise RecipeFileError(f"{run}: no {SUMMARY_FILE} — the run has not finished; `evomerge run --resume {run}` completes it")
    try:
        data = json.loads(source.read_text())
    except OSError as exc:
        raise RecipeFileError(f"{source}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise RecipeFileError(f"{source}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RecipeFileError(f"{source}: expected a JSON object (a recipe, or a run summary with a best recipe)")
    if "best" in data:
        if not data["best"]:
            raise RecipeFileError(f"{source}: the run has no scored candidate, so there is no merge to export")
        data = data["best"]["recipe"]
    if "method" not in data or "experts" not in data:
        raise RecipeFileError(f"{source}: neither a run summary nor a recipe (no method/experts)")
    return data
