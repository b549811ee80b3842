"""``oxeo-flows apply`` / ``oxeo-flows doctor`` through the real CLI app and Prefect server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from oxeo_flows.cli import app
from tests.apply._stacks import full_stack, invalid_pool_stack
from tests.fakes.proxy import CountingProxy

runner = CliRunner()


@pytest.fixture(autouse=True)
def _registry_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_PASSWORD", "s3cr3t-registry-password")


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_apply_then_check_then_drift(
    counted: CountingProxy, stack_file: Callable[..., Any], uid: str
) -> None:
    stack_file(full_stack(uid))
    first = _run("apply")
    assert first.exit_code == 0, first.output
    assert "create" in first.output
    assert f"vertex-{uid}" in first.output
    assert "s3cr3t-registry-password" not in first.output

    counted.reset()
    check = _run("apply", "--check")
    assert check.exit_code == 0, check.output
    assert "0 to create, 0 to update" in check.output
    assert counted.writes == []

    # A manual change in Prefect: someone edits a managed variable and a pool default.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableUpdate, WorkPoolUpdate

    with get_client(sync_client=True) as client:
        client.update_variable(VariableUpdate(name=f"greeting-{uid}", value="edited by hand"))
        pool = client.read_work_pool(f"process-{uid}")
        template = dict(pool.base_job_template)
        template["variables"]["properties"]["working_dir"]["default"] = "/tmp/elsewhere"
        client.update_work_pool(f"process-{uid}", WorkPoolUpdate(base_job_template=template))

    counted.reset()
    drift = _run("apply", "--check", "--json")
    assert drift.exit_code == 2, drift.output
    assert counted.writes == []
    data = json.loads(drift.stdout)
    assert data["has_drift"] is True
    changed = {i["name"]: i for i in data["items"] if i["action"] != "unchanged"}
    assert set(changed) == {f"greeting-{uid}", f"process-{uid}"}
    assert changed[f"greeting-{uid}"]["changes"]["value"] == {
        "old": "edited by hand",
        "new": "hello",
    }
    assert changed[f"process-{uid}"]["changes"]["variables.working_dir.default"] == {
        "old": "/tmp/elsewhere",
        "new": "/srv/flows",
    }

    fixed = _run("apply")
    assert fixed.exit_code == 0, fixed.output
    assert "2 write(s)" in fixed.output
    assert _run("apply", "--check").exit_code == 0


def test_apply_invalid_pool_exits_1_and_writes_nothing(
    counted: CountingProxy, stack_file: Callable[..., Any], uid: str
) -> None:
    stack_file(invalid_pool_stack(uid))
    result = _run("apply")
    assert result.exit_code == 1
    assert "nothing was written" in result.output
    assert f"broken-{uid}" in result.output
    assert counted.writes == []


def test_apply_dry_run_json(
    counted: CountingProxy, stack_file: Callable[..., Any], uid: str
) -> None:
    stack_file(full_stack(uid))
    result = _run("apply", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dry_run"] is True
    assert data["writes"] == 0
    assert {i["kind"] for i in data["items"]} == {"pool", "block", "variable"}
    assert counted.writes == []


def test_doctor_cli_exit_codes(prefect_api: str, stack_file: Callable[..., Any]) -> None:
    stack_file(
        """
[tool.oxeo-flows.stacks.dev]
[tool.oxeo-flows.stacks.dev.dask]
backend = "address"
address = "tcp://127.0.0.1:8786"
plaintext = true
"""
    )
    bad = _run("doctor", "--stack", "dev")
    assert bad.exit_code == 1
    assert "not TLS" in bad.output
    assert "fix:" in bad.output

    good = _run("doctor", "--json")  # the built-in local stack
    assert good.exit_code == 0, good.output
    data = json.loads(good.stdout)
    assert data["ok"] is True
    assert data["stack"] == "local"
    assert all(c["status"] in ("ok", "skip") for c in data["checks"])
