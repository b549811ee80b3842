"""``oxeo-flows demo``: run the local example pipeline end to end and print a summary."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from oxeo_flows.cli._common import console, err_console, styled

#: Prefect's embedded server gets 20 s to start by default, too short on a busy 2-core machine.
STARTUP_TIMEOUT_SECONDS = 120
#: Ports the demo's embedded server never takes: Dask's scheduler and dashboard defaults.
RESERVED_PORTS = frozenset({8786, 8787})


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


def server_port() -> int:
    """A free loopback port for the embedded Prefect server, never one of `RESERVED_PORTS`.

    Prefect alone picks a random port in 8000-8999, which may be Dask's 8786 or 8787; the
    kernel's ephemeral range is used instead.
    """
    while True:
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port


@contextlib.contextmanager
def _embedded_server(timeout: float) -> Iterator[str | None]:
    """Without PREFECT_API_URL: start Prefect's server on `server_port`, yield its API URL."""
    if os.environ.get("PREFECT_API_URL"):
        yield None
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer(port=server_port())
    server.start(timeout=int(timeout))
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        server.stop()


def quiet_dask_logs() -> None:
    """Show only warnings and errors of ``distributed`` (the demo's LocalCluster)."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)


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
    with temporary_settings(updates=updates), _embedded_server(timeout):
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
    quiet_dask_logs()
    if not os.environ.get("DEMO_API_TOKEN"):
        # The demo reads this through load_secret("demo-api-token") (env source).
        os.environ["DEMO_API_TOKEN"] = secrets.token_urlsafe(24)
        console.print(styled(("DEMO_API_TOKEN was not set: generated a throwaway value.", "dim")))
    api = os.environ.get("PREFECT_API_URL") or "Prefect's embedded server (no PREFECT_API_URL)"
    console.print(styled("Running ", ("local-pipeline", "bold"), f" from {example} against {api}"))

    summary = _run(example, output, tiles)

    colour = "red" if summary["failed"] else "green"
    console.print()
    for label, value in (
        ("flow run", styled(summary["flow_run"])),
        ("final state", styled((summary["state"], colour))),
        ("tasks", styled(f"{summary['completed_tasks']}/{summary['tasks']} completed")),
        ("wall time", styled(f"{summary['wall']:.1f} s")),
        ("outputs", styled(f"{output} (summary.json, tiles/*.json)")),
    ):
        console.print(styled((f"{label:<13}", "bold")) + value)
    if summary["failed"]:
        err_console.print(styled(("The demo flow run failed:", "red"), f" {summary['message']}"))
        raise typer.Exit(1)
