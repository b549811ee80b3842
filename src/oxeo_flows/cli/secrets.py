"""``oxeo-flows secrets``: look up one secret, or check that a stack's secrets all resolve."""

from __future__ import annotations

from typing import Annotated

import typer

from oxeo_flows.cli._common import console, err_console, friendly_errors, styled, table

app = typer.Typer(
    help="Load and check secrets (values are masked unless asked).", no_args_is_help=True
)

_MASK = "**********"


@app.command("get")
def get(
    name: str = typer.Argument(
        ..., help="Secret name or reference (gcp://, aws://, prefect://, env://)."
    ),
    reveal: bool = typer.Option(
        False, "--reveal", help="Print the value itself (to stdout, alone)."
    ),
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="Ask only these sources, in order (repeatable)."),
    ] = None,
    version: str = typer.Option("latest", "--version", help="Secret version."),
) -> None:
    """Load one secret and say which source answered. The value stays masked unless --reveal."""
    from oxeo_flows.secrets import resolve_secret

    with friendly_errors():
        loaded = resolve_secret(name, sources=source or None, version=version, stack=stack)
    origin = f"from {loaded.source}: {loaded.where}"
    if reveal:
        err_console.print(f"{name}: {origin}")
        typer.echo(loaded.value.get_secret_value())
        return
    console.print(f"{name}: {_MASK} ({origin})")


@app.command("check")
def check(
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
) -> None:
    """Check that every secret in the stack's secrets.required resolves (exit 1 otherwise)."""
    from oxeo_flows.errors import OxeoFlowsError
    from oxeo_flows.secrets import resolve_secret
    from oxeo_flows.stack import load_stack

    with friendly_errors():
        resolved = load_stack(stack)
    required = resolved.secrets.required
    if not required:
        console.print(
            f"Stack {resolved.name!r} lists no secrets in secrets.required; nothing to check."
        )
        return
    out = table(
        f"secrets of stack {resolved.name!r}", ("secret", "cyan"), "status", "source / problem"
    )
    failed = 0
    for name in required:
        try:
            loaded = resolve_secret(name, stack=resolved)
        except OxeoFlowsError as exc:
            failed += 1
            status = "missing" if isinstance(exc, KeyError) else "error"
            out.add_row(name, styled((status, "red")), str(exc))
            continue
        out.add_row(name, styled(("ok", "green")), f"{loaded.source}: {loaded.where}")
    console.print(out)
    if failed:
        err_console.print(f"{failed} of {len(required)} required secret(s) did not resolve.")
        raise typer.Exit(1)
    console.print(f"All {len(required)} required secret(s) resolve.")
