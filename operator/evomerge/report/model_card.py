"""The model card (README.md) of an exported merge: where it came from, how good it is, how to rebuild it."""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..catalogue.methods import METHODS
from ..merge.recipe import MergeRecipe
from ..models.uris import UriError, local_path, parse_uri
from ..spec.base import format_number
from ..spec.merge_search import MODEL_A, MergeSearchSpec, Objective, SearchSpec
from ..spec.merged_model import LineageEntry
from ..merge.mergekit_config import MergekitConfigError, mergekit_config_for, mergekit_yaml

CARD_FILE = "README.md"
MERGEKIT_FILE = "mergekit_config.yml"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
WEIGHT_HASHES = "of the weight files (one file: its own hash, the Hub's LFS id; several: of their `sha256sum` listing)"
_CHUNK = 1 << 20


def weight_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in Path(model_dir).iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(model_dir: Path) -> tuple[str, dict[str, str]]:
    """(checkpoint hash, per-file hashes). One weight file: its own sha256 (the Hub's LFS id); several:
    the sha256 of their `sha256sum` listing in name order, i.e. `sha256sum <files> | sha256sum`."""
    files = weight_files(model_dir)
    if not files:
        raise ValueError(f"{model_dir}: no weight files ({', '.join(WEIGHT_SUFFIXES)}) to hash")
    per_file = {p.name: file_sha256(p) for p in files}
    if len(per_file) == 1:
        return next(iter(per_file.values())), per_file
    listing = "".join(f"{h}  {name}\n" for name, h in per_file.items())
    return hashlib.sha256(listing.encode()).hexdigest(), per_file


def lineage_for(spec: MergeSearchSpec) -> list[LineageEntry]:
    """The base (named "base"), every expert and a data-flow path's model A, with revision and weight hash, read from local files."""
    sources: list[tuple[str, str, str | None]] = []
    if spec.base_model is not None:
        sources.append(("base", spec.base_model.uri, spec.base_model.revision))
    sources.extend((e.name, e.uri, e.revision) for e in spec.experts)
    model_a = spec.merge.data_flow.model_a if spec.merge.data_flow.enabled else None
    if model_a is not None:
        sources.append((MODEL_A, model_a.uri, model_a.revision))
    entries = []
    for name, uri, revision in sources:
        try:
            directory = local_path(uri)
        except UriError:
            entries.append(LineageEntry(name=name, uri=uri, revision=revision))
            continue
        digest, _ = weights_sha256(directory)
        entries.append(LineageEntry(name=name, uri=uri, revision=revision or _hf_snapshot(uri, directory), sha256=digest))
    return entries


def write_model_card(
    merged_dir: Path,
    spec: MergeSearchSpec,
    summary: dict[str, Any],
    lineage: Sequence[LineageEntry],
    name: str | None = None,
    *,
    hashes: str = WEIGHT_HASHES,
) -> Path:
    """Write README.md (and mergekit_config.yml when mergekit can express the merge) into the exported
    checkpoint. `summary` has summary.json's shape (a local run's; the cluster's export fills best and heldOut
    only); `hashes` says what the lineage's sha256 covers."""
    merged_dir = Path(merged_dir)
    recipe_dict = (summary.get("best") or {}).get("recipe")
    if recipe_dict is None:
        raise ValueError("summary has no best recipe: nothing was exported, so there is no card to write")
    recipe = MergeRecipe.from_dict(recipe_dict)
    try:
        config: dict[str, Any] | str = mergekit_config_for(recipe, merged_dir)
    except MergekitConfigError as exc:
        config = str(exc)
    path = merged_dir / CARD_FILE
    path.write_text(render_model_card(recipe, spec, summary, lineage, name or merged_dir.name, config, hashes=hashes))
    if isinstance(config, dict):
        (merged_dir / MERGEKIT_FILE).write_text(mergekit_yaml(config))
    return path


def render_model_card(
    recipe: MergeRecipe,
    spec: MergeSearchSpec,
    summary: dict[str, Any],
    lineage: Sequence[LineageEntry],
    title: str,
    mergekit: dict[str, Any] | str,
    *,
    hashes: str = WEIGHT_HASHES,
) -> str:
    """The card's markdown; `mergekit` is the config that rebuilds the merge, or why there is none."""
    best = summary.get("best") or {}
    parts = [
        _front_matter(lineage),
        f"# {title}",
        "",
        f"{_what_merge(recipe)} found by evolutionary search with evomerge {_evomerge_version()}.",
        "",
        "## Models",
        "",
        _lineage_table(lineage, spec),
        "",
        f"**sha256**: {hashes}.",
        "",
        "## Scores",
        "",
        _scores_table(spec, best.get("scores") or {}, summary.get("heldOut") or {}),
        "",
        "## How it was found",
        "",
        _search_facts(spec, summary),
        "",
        "## Recipe",
        "",
        _recipe_table(recipe),
        "",
        "The full recipe is in `evomerge_recipe.json`; rebuild the checkpoint with "
        "`evomerge merge evomerge_recipe.json --out merged/`.",
        "",
        "## Reproduce with mergekit",
        "",
        _mergekit_block(recipe, mergekit),
        "",
    ]
    return "\n".join(parts)


def _what_merge(recipe: MergeRecipe) -> str:
    if recipe.layer_path is not None:
        return f"A **data-flow** (layer path) merge of {len(recipe.layer_path.models)} model(s), {len(recipe.layer_path.hops)} hops,"
    return f"A **{recipe.method}** merge of {len(recipe.experts)} expert(s)"


def _front_matter(lineage: Sequence[LineageEntry]) -> str:
    hub = [parse_uri(e.uri).location.split("@")[0] for e in lineage if e.uri.startswith("hf://")]
    meta: dict[str, Any] = {"library_name": "transformers", "tags": ["merge", "evomerge", "mergekit"]}
    if hub:
        meta["base_model"] = hub
        meta["base_model_relation"] = "merge"
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _lineage_table(lineage: Sequence[LineageEntry], spec: MergeSearchSpec) -> str:
    base_uri = spec.base_model.uri if spec.base_model else None
    rows = ["| role | name | uri | revision | sha256 |", "|---|---|---|---|---|"]
    for e in lineage:
        role = "base" if e.name == "base" and e.uri == base_uri else "expert"
        rows.append(f"| {role} | {e.name} | `{e.uri}` | {e.revision or '—'} | {f'`{e.sha256}`' if e.sha256 else '—'} |")
    return "\n".join(rows)


def _scores_table(spec: MergeSearchSpec, search: dict[str, Any], held_out: dict[str, Any]) -> str:
    rows = ["| split | task | metric | limit | weight | score |", "|---|---|---|---|---|---|"]

    def row(split: str, o: Objective, value: Any) -> str:
        shown = "—" if value is None else format_number(round(float(value), 4))
        arrow = "↑" if o.direction == "maximize" else "↓"
        return f"| {split} | {o.task} | {o.metric} {arrow} | {o.limit or 'all'} | {format_number(o.weight)} | {shown} |"

    rows += [row("search", o, search.get(o.key)) for o in spec.objectives]
    rows += [row("held-out", o, held_out.get(o.key)) for o in spec.held_out]
    return "\n".join(rows)


def budget_text(search: SearchSpec) -> str:
    """The search's budget as the model card and the report both state it, refinement included: its evaluations
    come out of the same budget, so a reader who adds up generations would otherwise miss them."""
    text = f"population {search.population_size}, {search.max_generations} generations × {search.rounds} round(s)"
    if search.max_evaluations:
        text += f", at most {search.max_evaluations} evaluations"
    if search.refine is not None:
        text += f"; the last {search.refine.evaluations} for the local refinement"
    return text


def _search_facts(spec: MergeSearchSpec, summary: dict[str, Any]) -> str:
    """The spec's search settings, then what the run did where the summary knows it."""
    s = spec.search
    m = spec.merge
    grouping = m.granularity + (f" ({m.layer_groups} groups)" if m.granularity == "layerGroups" else "")
    best = summary.get("best") or {}
    settings = [
        ("optimizer", f"{s.algorithm} ({s.mode})"),
        ("seed", str(s.seed)),
        ("budget", budget_text(s)),
        ("evolved", f"{', '.join(m.evolve)} per expert and layer group ({grouping}{', attention/MLP split' if m.split_modules else ''})"),
    ]
    run = [
        ("evaluations", summary.get("evaluations"), f"{summary.get('evaluations')} ({summary.get('failedEvaluations', 0)} "
                                                    f"failed) over {summary.get('generations', '—')} generations"),
        ("stopped because", summary.get("stopReason"), str(summary.get("stopReason"))),
        ("best candidate", best.get("candidate"), f"{best.get('candidate')}, fitness {_fmt(best.get('fitness'))}"),
        ("exported with", summary.get("exporter"), str(summary.get("exporter"))),
    ]
    facts = settings + [(label, text) for label, known, text in run if known is not None]
    facts.append(("evaluation engine", f"{spec.evaluation.engine} (lm-evaluation-harness)"))
    return "\n".join(f"- **{k}**: {v}" for k, v in facts)


def _recipe_table(recipe: MergeRecipe) -> str:
    genes = list(dict.fromkeys(g for e in recipe.experts for g in e.params))
    header = "| expert | parameter | " + " | ".join(recipe.groups) + " |"
    rows = [header, "|---|---|" + "---|" * len(recipe.groups)]
    for e in recipe.experts:
        for gene in genes:
            if gene in e.params:
                cells = " | ".join(_fmt(e.value(gene, g)) for g in recipe.groups)
                rows.append(f"| {e.name} | {gene} | {cells} |")
    options = ", ".join(f"{k}={v}" for k, v in sorted(recipe.options.items()) if v is not None)
    if options:
        rows += ["", f"Options: {options}."]
    if recipe.layer_path is not None:
        rows += ["", f"Data-flow path: {len(recipe.layer_path.hops)} hops over {', '.join(recipe.layer_path.models)}."]
    return "\n".join(rows)


def _mergekit_block(recipe: MergeRecipe, config: dict[str, Any] | str) -> str:
    if isinstance(config, str):
        return f"Not expressible as a mergekit config: {config}."
    note = ""
    if METHODS[recipe.method].sparsifier == "random" and any(v < 1 for e in recipe.experts for v in e.params.get("density", {}).values()):
        note = ("\nDARE drops task-vector entries at random: mergekit draws its masks from the global RNG (seed them with "
                "`--random-seed`), evomerge per tensor, so the two agree in distribution, not bit for bit.\n")
    return f"```yaml\n{mergekit_yaml(config)}```\n\nThis is `{MERGEKIT_FILE}`; run it with `mergekit-yaml {MERGEKIT_FILE} merged/`.{note}"


def _hf_snapshot(uri: str, directory: Path) -> str | None:
    """The commit of an hf:// model resolved from the Hub cache (…/snapshots/<commit>)."""
    if uri.startswith("hf://") and directory.parent.name == "snapshots":
        return directory.name
    return None


def _evomerge_version() -> str:
    try:
        return version("evomerge")
    except PackageNotFoundError:
        return "(development tree)"


def _fmt(value: Any) -> str:
    return "—" if value is None else format_number(round(float(value), 4))
