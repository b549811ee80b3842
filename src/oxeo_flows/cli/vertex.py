"""``oxeo-flows vertex``: render Vertex AI job variables and ensure a ``vertex-ai`` work pool."""

from __future__ import annotations

import json

import typer

from oxeo_flows.cli._common import console, friendly_errors, styled

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
        from oxeo_flows.stack import load_stack
        from oxeo_flows.vertex import vertex_job

        job = vertex_job(stack=load_stack(stack), pool=pool)
        typer.echo(json.dumps(job.job_variables(), indent=2))


@app.command("ensure-pool")
def ensure_pool(
    name: str | None = typer.Argument(
        None, help="Work pool name (default: vertex.work-pool, then the stack's work pool)."
    ),
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
    credentials_block: str | None = typer.Option(
        None, "--credentials-block", help="GcpCredentials block (default: from the stack)."
    ),
    adopt: bool = typer.Option(
        False, "--adopt", help="Take over a pool oxeo-flows did not create."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Create or update a vertex-ai work pool with the stack's job defaults (idempotent)."""
    with friendly_errors():
        from oxeo_flows.stack import load_stack
        from oxeo_flows.vertex import ensure_vertex_pool, vertex_job

        the_stack = load_stack(stack)
        pool = name or the_stack.vertex.work_pool or the_stack.default_work_pool
        result = ensure_vertex_pool(
            pool,
            vertex_job(stack=the_stack),
            credentials_block=credentials_block,
            adopt=adopt,
            dry_run=dry_run,
            stack=the_stack,
        )
        verb = (
            f"would be {result.action}"
            if dry_run and result.action != "unchanged"
            else result.action
        )
        console.print(styled("work pool ", (result.name, "bold"), f" ({result.type}): {verb}"))
        for path, (old, new) in result.changes.items():
            console.print(f"  {path}: {old!r} -> {new!r}")
