"""Shared helpers for CLI commands: consoles and error reporting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from oxeo_flows.errors import OxeoFlowsError

console = Console()
err_console = Console(stderr=True)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn our errors into a red message and exit code 1, without a traceback."""
    try:
        yield
    except OxeoFlowsError as exc:
        err_console.print(f"[bold red]Error:[/] {exc}", highlight=False, markup=True)
        raise typer.Exit(1) from None
