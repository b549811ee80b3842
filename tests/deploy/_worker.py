"""Run one flow run of a deployment with a real `prefect worker start --run-once`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def run_with_worker(deployment: str, out: Path, pool: str, *, env: Mapping[str, str]) -> Any:
    """Start a run of ``deployment`` (parameter ``out``), work it off with one worker run.

    Returns the flow run's final state, asserted Completed (with the worker's output if not).
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    flow_run = run_deployment(deployment, parameters={"out": str(out)}, timeout=0)
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--run-once"],
        env=dict(env),
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
    assert state is not None
    assert state.is_completed(), f"{state!r}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return state
