"""``oxeo-flows demo``: run the local example pipeline end to end and print a summary."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import typer

from oxeo_flows.cli._common import console, err_console

#: Prefect's embedded server gets 20 s to start by default, too short on a busy 2-core machine.
STARTUP_TIMEOUT_SECONDS = 120


def example_dir() -> Path:
    """Where the ``local_pipeline`` example is: bundled in the wheel, or in a source checkout."""
    here = Path(__file__).resolve()
    candidates = [
        here.parents[1] / "_examples" / "local_pipeline",  # installed wheel (force-included)
        here.parents[3] / "examples" / "local_pipeline",  # editable install / source checkout
    ]
    for candidate in candidates:
        if (candidate / "flows" / "pipeline.py").is_file():
            return candidate
    msg = "the local_pipeline example is not installed with this copy of oxeo-flows"
    raise FileNotFoundError(msg)


def _run(example: Path, output: Path, tiles: int) -> dict[str, Any]:
    from prefect import get_client
    from prefect.flows import load_flow_from_entrypoint
    from prefect.settings import (
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    timeout = max(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), STARTUP_TIMEOUT_SECONDS)
    updates = {
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: timeout,
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
    }
    with temporary_settings(updates=updates):
        pipeline: Any = load_flow_from_entrypoint(f"{example / 'flows' / 'pipeline.py'}:pipeline")
        tile_ids = pipeline.fn.__globals__["default_tiles"](tiles)
        started = time.perf_counter()
        state: Any = pipeline(tiles=tile_ids, output_dir=str(output), return_state=True)
        wall = time.perf_counter() - started
        flow_run_id = state.state_details.flow_run_id
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(flow_run_id) if flow_run_id else None
    result: dict[str, Any] = state.result(raise_on_failure=False) if state.is_completed() else {}
    return {
        "flow_run": flow_run.name if flow_run else "?",
        "state": state.name,
        "failed": state.is_failed() or state.is_crashed(),
        "message": state.message,
        "tasks": result.get("tasks", 0),
        "completed_tasks": result.get("completed", 0),
        "wall": wall,
    }


def demo(
    output: Path = typer.Option(
        Path("demo-output"), "--output", "-o", help="Where the pipeline writes its results."
    ),
    tiles: int = typer.Option(16, "--tiles", min=1, max=400, help="Number of tiles to process."),
) -> None:
    """Run the local example pipeline end to end and print a summary.

    Uses the ``local`` stack (in-process Dask, secrets from the environment) and, without
    ``PREFECT_API_URL``, Prefect's embedded server.
    """
    example = example_dir()
    output = output.resolve()
    # The example's own stack file, whatever the working directory.
    os.environ["OXEO_FLOWS_CONFIG"] = str(example / "pyproject.toml")
    os.environ.setdefault("OXEO_FLOWS_STACK", "local")
    if not os.environ.get("DEMO_API_TOKEN"):
        # The demo reads this through load_secret("demo-api-token") (env source).
        os.environ["DEMO_API_TOKEN"] = secrets.token_urlsafe(24)
        console.print("[dim]DEMO_API_TOKEN was not set: generated a throwaway value.[/]")
    api = os.environ.get("PREFECT_API_URL") or "Prefect's embedded server (no PREFECT_API_URL)"
    console.print(f"Running [bold]local-pipeline[/] from {example} against {api}")

    summary = _run(example, output, tiles)

    colour = "red" if summary["failed"] else "green"
    console.print()
    console.print(f"[bold]flow run[/]     {summary['flow_run']}")
    console.print(f"[bold]final state[/]  [{colour}]{summary['state']}[/]")
    console.print(
        f"[bold]tasks[/]        {summary['completed_tasks']}/{summary['tasks']} completed"
    )
    console.print(f"[bold]wall time[/]    {summary['wall']:.1f} s")
    console.print(f"[bold]outputs[/]      {output} (summary.json, tiles/*.json)")
    if summary["failed"]:
        err_console.print(f"[red]The demo flow run failed:[/] {summary['message']}")
        raise typer.Exit(1)
