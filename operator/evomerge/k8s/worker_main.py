"""What the evaluation and export pods run: `evomerge evaluate-batch` and `evomerge export-model`.

Both report through the container's termination message (compact JSON, read by the controller or the
operator), so the pods need no API access. torch and lm-eval are imported only inside these functions.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..executors.kubernetes import encode_scores
from ..spec.loading import SpecError, validate_document
from ..spec.merge_search import MergeSearch, MergeSearchSpec
from .messages import ExportResult
from .render_eval import objective_keys
from .render_pods import TERMINATION_LOG, TERMINATION_LOG_ENV

LINEAGE_FILE = "evomerge_lineage.json"


class InputError(ValueError):
    """The pod's inputs (spec, recipes, models) are unusable: retrying the pod cannot help."""


def termination_log() -> Path | None:
    """$EVOMERGE_TERMINATION_LOG, else /dev/termination-log when the kubelet provides it."""
    configured = os.environ.get(TERMINATION_LOG_ENV)
    if configured:
        return Path(configured)
    default = Path(TERMINATION_LOG)
    return default if default.exists() else None


def report(message: str) -> None:
    path = termination_log()
    if path is not None:
        path.write_text(message)
    print(message, flush=True)


def read_spec(path: Path) -> MergeSearchSpec:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"--spec {path}: {error}") from None
    try:
        return validate_document(document, str(path), MergeSearch).spec
    except SpecError as error:
        raise InputError(str(error)) from None


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{what} {path}: {error}") from None


def evaluate_batch(spec_path: Path, recipes_path: Path, model_dir: Path | None, server_url: str | None, held_out: bool,
                   adapter: str | None = None) -> str:
    """Score every recipe of the batch; the compact message for the termination log (one entry per recipe)."""
    spec = read_spec(spec_path)
    items = read_json(recipes_path, "--recipes")
    if not isinstance(items, list) or not all(isinstance(i, dict) and "recipe" in i for i in items):
        raise InputError(f"--recipes {recipes_path}: expected a JSON list of {{id, recipe}}")
    from ..evaluate.batch import score_batch

    results = score_batch(items, spec, held_out=held_out, model_dir=model_dir, server_url=server_url, adapter=adapter)
    return encode_scores(results, objective_keys(spec, held_out))


def content_hash(directory: Path) -> str:
    """sha256 over a checkpoint's weight and config files, in name order (what a revision pins)."""
    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.is_file() and (p.suffix in (".safetensors", ".bin") or p.name.endswith(".json")))
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def export_model(recipe_path: Path, spec_path: Path, out_dir: Path) -> ExportResult:
    """Write the merge to out_dir (with its lineage file), then score it on spec.heldOut."""
    from ..merge.export import export_merge
    from ..merge.inputs import open_recipe_inputs
    from ..merge.recipe import MergeRecipe
    from ..models.checkpoint import CheckpointError
    from ..models.uris import UriError, local_path

    spec = read_spec(spec_path)
    try:
        recipe = MergeRecipe.from_dict(read_json(recipe_path, "--recipe"))
        base, experts = open_recipe_inputs(recipe, spec.allow_pickle)  # LoRA adapters over the base, path models
        base_path = local_path(recipe.base_uri) if recipe.base_uri else None
    except (KeyError, TypeError, UriError, CheckpointError) as error:
        raise InputError(str(error)) from None
    paths = {name: source.root for name, source in experts.items()}
    hashes = {name: content_hash(path) for name, path in paths.items()}
    if base_path is not None:
        hashes["base"] = content_hash(base_path)
    export_merge(recipe, base, experts, out_dir)
    (out_dir / LINEAGE_FILE).write_text(json.dumps({"sha256": hashes}, indent=2, sort_keys=True))
    held_out: dict[str, float] = {}
    if spec.held_out:
        from ..evaluate.batch import score_batch

        # The exported checkpoint is scored in-process whatever engine the search used: no server here.
        resident = spec.model_copy(update={"evaluation": spec.evaluation.model_copy(update={"engine": "transformers"})})
        (item,) = score_batch([{"id": "export", "recipe": recipe.to_dict()}], resident, held_out=True)
        if "error" in item:
            return ExportResult(hashes=hashes, error=f"held-out scoring failed: {item['error']}")
        held_out = dict(item["scores"])
    return ExportResult(held_out, hashes)

