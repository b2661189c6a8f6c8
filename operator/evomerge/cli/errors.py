"""How every command stops on an error: one line on stderr, and the exit code the contract gives it."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from ..catalogue.contracts import INVALID_INPUT

console = Console(stderr=True)


def fail(message: str, code: int = INVALID_INPUT) -> NoReturn:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
