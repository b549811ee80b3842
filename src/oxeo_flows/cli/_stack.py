"""``oxeo-flows stack``: inspect the resolved stack."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from oxeo_flows.cli._common import console, friendly_errors

app = typer.Typer(help="Inspect stacks.", no_args_is_help=True)


def _leaves(data: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(data, dict) and data:
        out: list[tuple[tuple[str, ...], Any]] = []
        for key, value in data.items():
            out.extend(_leaves(value, (*path, str(key))))
        return out
    return [(path, data)]


@app.command("show")
def show(
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show the resolved stack, each value with the source it came from."""
    from oxeo_flows.stack import load_stack

    with friendly_errors():
        resolved = load_stack(stack)
    data = resolved.model_dump(mode="json", exclude={"name", "extends"})
    rows = [
        (".".join(p.replace("_", "-") for p in path), value, resolved.origin(*path))
        for path, value in _leaves(data)
    ]
    if as_json:
        payload = {
            "stack": resolved.name,
            "file": str(resolved.file) if resolved.file else None,
            "values": {k: {"value": v, "source": o} for k, v, o in rows},
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    where = str(resolved.file) if resolved.file else "no configuration file (built-in defaults)"
    table = Table(title=f"stack {resolved.name!r} — {where}", title_justify="left")
    table.add_column("key", style="cyan", no_wrap=True)
    table.add_column("value")
    table.add_column("source", style="dim")
    for key, value, origin in rows:
        shown = json.dumps(value) if not isinstance(value, str) else value
        table.add_row(key, shown, origin)
    console.print(table)
