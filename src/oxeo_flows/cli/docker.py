"""``oxeo-flows docker``: ensure a ``docker`` work pool from the stack."""

from __future__ import annotations

import typer

from oxeo_flows.cli._pools import ensure_kind_pool

app = typer.Typer(help="Docker runs: work pools.", no_args_is_help=True)


@app.command("ensure-pool")
def ensure_pool(
    name: str | None = typer.Argument(
        None, help="Work pool name (default: docker.work-pool, then the stack's work pool)."
    ),
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
    adopt: bool = typer.Option(
        False, "--adopt", help="Take over a pool oxeo-flows did not create."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Create or update a docker work pool from the stack (what `apply` writes; idempotent)."""
    ensure_kind_pool("docker", name, stack=stack, adopt=adopt, dry_run=dry_run)
