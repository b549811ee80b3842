"""``oxeo-flows vertex``: render Vertex AI job variables and ensure a ``vertex-ai`` work pool."""

from __future__ import annotations

import json

import typer

from oxeo_flows.cli._common import friendly_errors
from oxeo_flows.cli._pools import ensure_kind_pool

app = typer.Typer(
    help="Vertex AI runs: job variables and work pools.",
    no_args_is_help=True,
)


@app.command("job-variables")
def job_variables(
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
    pool: str | None = typer.Option(
        None, "--pool", help="Read a vertex-ai section of [pools] instead of [vertex]."
    ),
) -> None:
    """Print the job variables of the stack's Vertex job, as JSON (for prefect.yaml)."""
    with friendly_errors():
        from oxeo_flows.pools.kind_vertex import vertex_job

        job = vertex_job(stack=stack, pool=pool)
        typer.echo(json.dumps(job.job_variables(), indent=2))


@app.command("ensure-pool")
def ensure_pool(
    name: str | None = typer.Argument(
        None, help="Work pool name (default: vertex.work-pool, then the stack's work pool)."
    ),
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
    adopt: bool = typer.Option(
        False, "--adopt", help="Take over a pool oxeo-flows did not create."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Create or update a vertex-ai work pool from the stack (what `apply` writes; idempotent)."""
    ensure_kind_pool("vertex-ai", name, stack=stack, adopt=adopt, dry_run=dry_run)
