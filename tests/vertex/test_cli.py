"""``oxeo-flows vertex``: job variables as JSON, and the pool ensure (dry run, then for real)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from typer.testing import CliRunner

from oxeo_flows.cli import app
from tests.vertex.conftest import NUMBER, STACK


def test_job_variables_json(stack_file: Any) -> None:
    stack_file(STACK)
    result = CliRunner().invoke(app, ["vertex", "job-variables"])
    assert result.exit_code == 0, result.output
    variables = json.loads(result.output)
    assert variables["network"] == f"projects/{NUMBER}/global/networks/dask"


def test_bad_stack_is_a_clean_error(stack_file: Any) -> None:
    stack_file(STACK.replace('machine-type = "n1-highmem-8"', 'machine-type = "huge box"'))
    result = CliRunner().invoke(app, ["vertex", "job-variables"])
    assert result.exit_code == 1
    assert "machine-type" in result.output
    assert "Traceback" not in result.output


def test_ensure_pool_dry_run_then_real(stack_file: Any, prefect_server: str) -> None:
    stack_file(STACK)
    name = f"cli-vertex-{uuid.uuid4().hex[:8]}"
    dry = CliRunner().invoke(app, ["vertex", "ensure-pool", name, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would be created" in dry.output
    real = CliRunner().invoke(app, ["vertex", "ensure-pool", name])
    assert real.exit_code == 0, real.output
    assert ": created" in real.output
    again = CliRunner().invoke(app, ["vertex", "ensure-pool", name])
    assert ": unchanged" in again.output
