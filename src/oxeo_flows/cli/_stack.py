"""``oxeo-flows stack``: inspect the resolved stack."""

from __future__ import annotations

import json
from typing import Any

import typer
from pydantic import BaseModel

from oxeo_flows._model import kebab
from oxeo_flows.cli._common import console, friendly_errors, table

app = typer.Typer(help="Inspect stacks.", no_args_is_help=True)

Row = tuple[str, Any, tuple[str, ...]]  # shown key, JSON value, field path for origin()


def _leaves(
    obj: Any, data: Any, path: tuple[str, ...] = (), shown: tuple[str, ...] = ()
) -> list[Row]:
    """Every leaf value: model field names in kebab-case, dictionary keys as written."""
    if isinstance(obj, BaseModel):
        out: list[Row] = []
        for name in type(obj).model_fields:
            if name in data:
                out += _leaves(getattr(obj, name), data[name], (*path, name), (*shown, kebab(name)))
        return out
    if isinstance(obj, dict) and obj:
        out = []
        for key, value in obj.items():
            out += _leaves(value, data[str(key)], (*path, str(key)), (*shown, str(key)))
        return out
    return [(".".join(shown), data, path)]


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
    rows = [(key, value, resolved.origin(*path)) for key, value, path in _leaves(resolved, data)]
    if as_json:
        payload = {
            "stack": resolved.name,
            "file": str(resolved.file) if resolved.file else None,
            "values": {k: {"value": v, "source": o} for k, v, o in rows},
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    where = str(resolved.file) if resolved.file else "no configuration file (built-in defaults)"
    out = table(f"stack {resolved.name!r} — {where}", ("key", "cyan"), "value", ("source", "dim"))
    for key, value, origin in rows:
        shown = json.dumps(value) if not isinstance(value, str) else value
        out.add_row(key, shown, origin)
    console.print(out)
