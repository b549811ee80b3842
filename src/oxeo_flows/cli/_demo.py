"""``oxeo-flows demo``: run the local example pipeline end to end."""

from __future__ import annotations

import typer


def demo() -> None:
    """Run the local demo pipeline end to end and print a summary."""
    typer.echo("demo: not yet")
