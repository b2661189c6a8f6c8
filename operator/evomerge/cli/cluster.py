"""The cluster commands: `operator`, `controller`, `evaluate-batch` and `export-model`.

Each is one process role of the Kubernetes deployment (the operator Deployment, the controller Job, the
evaluation and export pods). The operator path imports neither torch nor lm-eval; the pod commands import
them only when they run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, get_args

import typer

from ..spec.merge_search import Exporter
from ..catalogue.engines import ADAPTER_ENGINES
from ..catalogue.contracts import INVALID_INPUT, SCORER_INPUT_ERROR, SCORER_ORPHANED, SEARCH_FAILED
from .errors import fail


def operator(
    namespace: Optional[list[str]] = typer.Option(
        None, "--namespace", "-n",
        help="Namespace to watch (repeatable). Default: $EVOMERGE_WATCH_NAMESPACES (comma-separated), else all namespaces.",
    ),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", help="Default: in-cluster service account, else $KUBECONFIG."),
    metrics_port: int = typer.Option(8080, "--metrics-port", help="Port of /metrics (Prometheus); 0 disables it."),
    liveness: str = typer.Option("http://0.0.0.0:8081/healthz", "--liveness", help="kopf's liveness endpoint."),
    resync_seconds: float = typer.Option(30.0, "--resync-seconds", help="Period of the full re-reconcile of every object (retries failures)."),
    log_format: str = typer.Option("plain", "--log-format", help="plain or json."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every handler call."),
) -> None:
    """Run the evomerge operator (kopf): reconciles MergeSearch, MergedModel and Expert resources."""
    import kopf

    from ..k8s import operator_main

    if log_format not in ("plain", "json"):
        fail("--log-format must be plain or json")
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.PLAIN)
    operator_main.quiet_logs(verbose)
    namespaces = list(namespace or [n.strip() for n in os.environ.get("EVOMERGE_WATCH_NAMESPACES", "").split(",") if n.strip()])
    operator_main.run(namespaces, kubeconfig, metrics_port or None, liveness or None, resync_seconds)


def controller(
    search: str = typer.Option(..., "--search", help="The MergeSearch, as namespace/name."),
    epoch: int = typer.Option(..., "--epoch", min=1, help="The epoch to run (its ConfigMap holds the frozen spec)."),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", help="Default: in-cluster service account, else $KUBECONFIG."),
) -> None:
    """Run one epoch of a MergeSearch: the search loop with evaluation Jobs; resumes from its history."""
    from ..k8s.client import Kube
    from ..k8s.controller_main import ControllerError, run_controller
    from ..k8s.render_search import CONTROLLER_JOB_ENV
    from ..k8s.settings import ClusterSettings
    from ..evaluate.worker import report
    from ..models.checkpoint import CheckpointError
    from ..models.uris import UriError
    from ..runner.loop import HistoryMismatch, SearchFailed
    from ..spec.loading import SpecError

    namespace, _, name = search.partition("/")
    if not namespace or not name:
        fail("--search must be namespace/name")
    try:
        result = run_controller(Kube.connect(kubeconfig), namespace, name, epoch, ClusterSettings.from_env(),
                                os.environ.get(CONTROLLER_JOB_ENV))
    except SearchFailed as error:
        report(f"SearchFailed: {error}")
        raise typer.Exit(SEARCH_FAILED)
    except (ControllerError, SpecError, UriError, CheckpointError, HistoryMismatch, ValueError) as error:
        report(f"{type(error).__name__}: {error}")
        raise typer.Exit(INVALID_INPUT)
    report(f"finished ({result.stop_reason}): {result.evaluations} evaluations, best {result.best}")


def evaluate_batch(
    spec: Path = typer.Option(..., "--spec", help="MergeSearch JSON (the epoch's effective spec)."),
    recipes: Path = typer.Option(..., "--recipes", help="JSON list of {id, recipe}."),
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="The merged candidate a sidecar serves (served engines)."),
    server_url: Optional[str] = typer.Option(None, "--server-url", help="The sidecar's URL (served engines)."),
    held_out: bool = typer.Option(False, "--held-out", help="Score spec.heldOut instead of spec.objectives."),
    adapter: Optional[str] = typer.Option(
        None, "--adapter", help=f"The sidecar serves the candidate as this LoRA adapter over the base ({'/'.join(ADAPTER_ENGINES)})."
    ),
    work_url: Optional[str] = typer.Option(
        None, "--work-url", help="An async search's controller: results go there, and the pod asks it for more work."
    ),
) -> None:
    """Score a batch of candidates; compact JSON scores go to stdout and the termination log."""
    from ..evaluate.work_client import WorkEndpointGone
    from ..evaluate.worker import InputError, evaluate_batch as score, report

    try:
        message = score(spec, recipes, model_dir, server_url, held_out, adapter, work_url)
    except (InputError, ValueError) as error:
        report(f"InputError: {error}")
        raise typer.Exit(SCORER_INPUT_ERROR)
    except WorkEndpointGone as error:
        report(f"WorkEndpointGone: {error}")
        raise typer.Exit(SCORER_ORPHANED)
    report(message)


def export_model(
    recipe: Path = typer.Option(..., "--recipe", help="The recipe JSON to export."),
    spec: Path = typer.Option(..., "--spec", help="The MergeSearch JSON (heldOut objectives, evaluation settings)."),
    out: Path = typer.Option(..., "--out", help="Directory for the merged checkpoint."),
    model: Optional[Path] = typer.Option(
        None, "--model", help="The MergedModel JSON: its name, search scores and input revisions go into the model card."
    ),
    exporter: str = typer.Option("evomerge", "--exporter", help="evomerge (its own exporter) or mergekit (mergekit-yaml)."),
    published: Optional[Path] = typer.Option(
        None, "--published", help="The published version's checkpoint: score both on the same heldOut items and judge promotion."
    ),
) -> None:
    """Write a MergedModel version: the merged checkpoint, its model card, its inputs' content hashes, held-out scores."""
    from ..k8s.messages import ExportResult, encode_export
    from ..evaluate.worker import InputError, report
    from ..k8s.worker_main import export_model as export

    if exporter not in get_args(Exporter):
        report(encode_export(ExportResult(error=f"--exporter {exporter!r}: use {' or '.join(get_args(Exporter))}")))
        raise typer.Exit(INVALID_INPUT)
    try:
        result = export(recipe, spec, out, model, exporter, published)
    except InputError as error:
        report(encode_export(ExportResult(error=str(error))))
        raise typer.Exit(INVALID_INPUT)
    report(encode_export(result))
    if result.error is not None:
        raise typer.Exit(SEARCH_FAILED)


def register(app: typer.Typer) -> None:
    """Add the cluster commands to the evomerge CLI."""
    app.command("operator")(operator)
    app.command("controller")(controller)
    app.command("evaluate-batch")(evaluate_batch)
    app.command("export-model")(export_model)
