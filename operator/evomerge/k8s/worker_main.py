"""What the export pod runs: `evomerge export-model` (the evaluation pod's code is evaluate/worker.py).

It reports through the container's termination message (compact JSON, read by the operator), so the pod
needs no API access. torch is imported only inside these functions.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..evaluate.worker import InputError, read_json, read_spec
from ..merge.recipe import MergeRecipe
from ..spec.merge_search import MERGEKIT_NO_LORA, Exporter, MergeSearchSpec, PromotionSpec
from ..spec.merged_model import MergedModelSpec
from .messages import ExportResult
from .promotion import NOT_PROMOTED, GateResult, judge
from .render_model import recipe_lineage

LINEAGE_FILE = "evomerge_lineage.json"


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


CONTENT_HASHES = ("over the weight and config files in name order, as in evomerge_lineage.json and the "
                  "MergedModel's status.lineage")


def read_model(path: Path) -> tuple[str, MergedModelSpec]:
    """(name, spec) of the MergedModel document the export writes a version of."""
    document = read_json(path, "--model")
    try:
        return str(document["metadata"]["name"]), MergedModelSpec.model_validate(document["spec"])
    except (KeyError, TypeError, ValidationError) as error:
        raise InputError(f"--model {path}: not a MergedModel document ({error})") from None


def export_model(recipe_path: Path, spec_path: Path, out_dir: Path, model_path: Path | None = None,
                 exporter: Exporter = "evomerge", published_dir: Path | None = None) -> ExportResult:
    """Write the merge to out_dir (with lineage file and model card), then score it on spec.heldOut.

    `model_path` is the MergedModel the version belongs to: its name, search scores and input revisions go
    into the card. `exporter` mergekit runs `mergekit-yaml` on the card's config instead of evomerge's exporter.
    `published_dir` is the published version's checkpoint: the new one is scored beside it on the same heldOut
    items and the promotion gate judges whether it replaces it.
    """
    from ..merge.export import RECIPE_FILE, export_merge
    from ..merge.inputs import open_recipe_inputs
    from ..models.checkpoint import CheckpointError
    from ..models.lora import LoraExpert
    from ..models.uris import UriError, local_path

    spec = read_spec(spec_path)
    model_name, model = read_model(model_path) if model_path is not None else (out_dir.name, None)
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
    if exporter == "mergekit":
        lora = sorted(n for n, source in experts.items() if isinstance(source, LoraExpert))
        if lora:
            raise InputError(f"MergeSearch spec.storage.output.exporter: {MERGEKIT_NO_LORA} (experts {', '.join(lora)})")
        reference = base or next(iter(experts.values()))
        error = export_with_mergekit(recipe, int(reference.config().get("num_hidden_layers", 1)), out_dir, spec)
        if error is not None:
            return ExportResult(hashes=hashes, error=error)
        (out_dir / RECIPE_FILE).write_text(json.dumps(recipe.to_dict(), indent=2))
    else:
        export_merge(recipe, base, experts, out_dir)
    (out_dir / LINEAGE_FILE).write_text(json.dumps({"sha256": hashes}, indent=2, sort_keys=True))
    held_out: dict[str, float] = {}
    gate = None
    if spec.held_out:
        try:
            held_out, gate = score_held_out(spec, out_dir, published_dir)
        except Exception as error:  # noqa: BLE001 - lm-eval and transformers raise many types; the reason goes to status
            return ExportResult(hashes=hashes, error=f"held-out scoring failed: {type(error).__name__}: {error}")
    write_card(out_dir, recipe, spec, model, model_name, hashes, held_out, exporter)
    return ExportResult(held_out, hashes, output=written_hash(out_dir), gate=gate)


def written_hash(out_dir: Path) -> str | None:
    """The checkpoint's content hash as read back from out_dir once written; None when no weights are there
    (the operator then names the version lost rather than published)."""
    if not out_dir.is_dir() or not any(p.suffix == ".safetensors" for p in out_dir.iterdir()):
        return None
    return content_hash(out_dir)


def score_held_out(spec: MergeSearchSpec, out_dir: Path, published_dir: Path | None) -> tuple[dict[str, float], GateResult | None]:
    """The exported checkpoint's heldOut scores; with the published checkpoint, both scored on the same items,
    their per-item results kept beside the new one (ITEMS_FILE) and the promotion gate's verdict.

    The checkpoints on storage are scored, in-process whatever engine the search used: what is published is
    what is measured."""
    from ..evaluate.items import ITEMS_FILE, ItemsError, compare_each, compare_items, items_to_json
    from ..evaluate.model import evaluate_items

    evaluation, seed = spec.evaluation, spec.search.seed
    comparable = published_dir is not None and (published_dir / "config.json").exists()
    models = {"candidate": out_dir, **({"published": published_dir} if comparable else {})}
    scored = evaluate_items(models, spec.held_out, evaluation.include_paths, device=evaluation.device,
                            batch_size=evaluation.batch_size, seed=seed)
    held_out, candidate = scored["candidate"]
    record: dict[str, Any] = {"seed": seed, "candidate": items_to_json(candidate)}
    gate = None
    if published_dir is not None and not comparable:
        gate = GateResult(False, NOT_PROMOTED, f"the published checkpoint at {published_dir} has no config.json, so the "
                          "versions could not be compared")
    elif comparable:
        baseline, published = scored["published"]
        record["published"] = items_to_json(published)
        promotion = spec.storage.output.promotion if spec.storage.output is not None else PromotionSpec()
        try:
            weighted = compare_items(spec.held_out, published, candidate, seed=seed)
            each = compare_each(spec.held_out, published, candidate, seed=seed)
        except ItemsError as error:
            gate = GateResult(False, NOT_PROMOTED, f"the versions could not be compared item by item: {error}", baseline=baseline)
        else:
            gate = judge(promotion, weighted, each, baseline)
            record["tests"] = {"weighted": weighted.to_dict(), **{k: t.to_dict() for k, t in each.items()}}
    (out_dir / ITEMS_FILE).write_text(json.dumps(record, sort_keys=True))
    return held_out, gate


def export_with_mergekit(recipe: MergeRecipe, num_layers: int, out_dir: Path, spec: MergeSearchSpec) -> str | None:
    """Run mergekit's own `mergekit-yaml` on the recipe's mergekit config; None, or why it failed."""
    from ..merge.mergekit_config import MergekitConfigError, mergekit_yaml, recipe_to_mergekit

    try:
        config = recipe_to_mergekit(recipe, num_layers)
    except MergekitConfigError as error:
        raise InputError(f"MergeSearch spec.storage.output.exporter: mergekit cannot express this recipe ({error}) "
                         "— set exporter: evomerge") from None
    program = Path(sys.executable).with_name("mergekit-yaml")
    command = str(program) if program.exists() else shutil.which("mergekit-yaml")
    if command is None:
        raise InputError("MergeSearch spec.storage.output.exporter: mergekit, but mergekit-yaml is not installed in the "
                         "worker image — install evomerge[mergekit] there, or set exporter: evomerge")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        config_file = Path(scratch) / "mergekit_config.yml"
        config_file.write_text(mergekit_yaml(config))
        args = [command, str(config_file), str(out_dir), "--no-write-model-card", "--quiet",
                "--random-seed", str(spec.search.seed)]
        if spec.evaluation.device != "cpu" and _cuda_available():
            args.append("--cuda")
        run = subprocess.run(args, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        tail = " ".join((run.stderr or run.stdout).split()[-60:])
        return f"mergekit-yaml failed (exit {run.returncode}): {tail}"
    return None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def write_card(out_dir: Path, recipe: MergeRecipe, spec: MergeSearchSpec, model: MergedModelSpec | None, name: str,
               hashes: dict[str, str], held_out: dict[str, float], exporter: Exporter) -> Path:
    """report/model_card.py's README.md from what the export knows: the MergedModel's name, search scores and
    lineage (without a MergedModel: the recipe's inputs and the spec's revisions), the hashes and held-out scores
    it measured."""
    from ..report.model_card import write_model_card

    inputs = model.lineage if model is not None else recipe_lineage(recipe, spec)  # as status.lineage will read
    lineage = [entry.model_copy(update={"sha256": hashes.get(entry.name)}) for entry in inputs]
    summary = {
        "best": {"recipe": recipe.to_dict(), "scores": dict(model.scores.search) if model is not None else {}},
        "heldOut": held_out,
        "exporter": f"mergekit-yaml (mergekit {version('mergekit')})" if exporter == "mergekit" else "evomerge",
    }
    title = f"{name} v{model.version}" if model is not None else name
    return write_model_card(out_dir, spec, summary, lineage, name=title, hashes=CONTENT_HASHES)
