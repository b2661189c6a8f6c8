"""``evomerge zoo``: build the worlds used by the demo, the benchmarks and the tests — the tiny expert zoo, and the
SmolLM2 world (a real pretrained base, experts fine-tuned from it)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

zoo_app = typer.Typer(help="Expert worlds: a base model, skill experts, LoRA adapters and tasks.",
                      no_args_is_help=True)


@zoo_app.callback()
def _zoo() -> None:
    """Expert worlds (the tiny zoo, or SmolLM2): a base model, skill experts, LoRA adapters and lm-eval tasks."""


@zoo_app.command("build")
def build(
    world: str = typer.Option("toy", "--world", help="toy (the tiny zoo trained from scratch) or smollm2 "
                              "(SmolLM2-135M and experts fine-tuned from it; about 30 minutes on 2 cores)."),
    size: Optional[str] = typer.Option(None, "--size", help="The toy zoo's size: nano (tests, under a minute; "
                                       "the default) or small (demo)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice; same seed, same bytes."),
    cache_dir: Optional[Path] = typer.Option(
        None, "--cache-dir", help="Cache root (default: $EVOMERGE_CACHE or ~/.cache/evomerge)."),
) -> None:
    """Build a world (or find it in the cache) and print where it is."""
    from evomerge.zoo.worlds import build_world, check_world

    try:
        check_world(world, size)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--size" if "size" in str(err) else "--world") from None
    started = time.monotonic()
    zoo = build_world(world, seed=seed, size=size, cache_dir=cache_dir,
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
