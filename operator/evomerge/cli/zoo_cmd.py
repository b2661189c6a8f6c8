"""``evomerge zoo``: build the tiny expert zoo used by the demo, the benchmarks and the tests."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

zoo_app = typer.Typer(help="The tiny expert zoo: a base model, skill experts, LoRA adapters and tasks.",
                      no_args_is_help=True)


@zoo_app.callback()
def _zoo() -> None:
    """The tiny expert zoo: a base model, skill experts, LoRA adapters and lm-eval tasks."""


@zoo_app.command("build")
def build(
    size: str = typer.Option("nano", "--size", help="nano (tests, under a minute) or small (demo)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice; same seed, same bytes."),
    cache_dir: Optional[Path] = typer.Option(
        None, "--cache-dir", help="Cache root (default: $EVOMERGE_CACHE or ~/.cache/evomerge)."),
) -> None:
    """Build the zoo (or find it in the cache) and print where it is."""
    from evomerge.zoo import build_zoo, recipe_for

    try:
        recipe_for(size)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--size") from None
    started = time.monotonic()
    zoo = build_zoo(size=size, seed=seed, cache_dir=cache_dir,  # type: ignore[arg-type]
                    progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    elapsed = time.monotonic() - started
    typer.echo(f"zoo: {zoo.root}  ({elapsed:.0f}s)")
    typer.echo(f"  base:        {zoo.base}")
    typer.echo(f"  experts:     {', '.join(zoo.experts)}  (skills: {', '.join(zoo.skills)}; "
               f"distractors: {', '.join(zoo.distractors)})")
    typer.echo(f"  LoRA:        {', '.join(zoo.lora_adapters)}")
    typer.echo(f"  tasks:       {zoo.tasks_dir}  (lm-eval include_path; metric {zoo.metric})")
    typer.echo(f"  search:      {', '.join(zoo.search_tasks.values())}")
    typer.echo(f"  held-out:    {', '.join(zoo.heldout_tasks.values())}")
