"""CLI output is literal and complete: no Rich markup or emoji from values, no cut values."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from oxeo_flows.cli import app
from oxeo_flows.cli._demo import RESERVED_PORTS, server_port
from tests.cli._run import run_cli

runner = CliRunner()

ARN = (
    "aws:arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
    "prod/db-password-AbCdEf-with-a-name-far-longer-than-eighty-columns-of-a-terminal"
)
LONG = "x" * 50 + "-a-value-longer-than-any-table-cell-at-80-columns-" + "y" * 50

STACK = f"""
[tool.oxeo-flows.stacks.prod.secrets]
sources = ["aws", "env"]
required = ["{ARN}"]

[tool.oxeo-flows.stacks.prod.docker]
env = {{ OXEO_FLOWS_STACK = "prod", LONG = "{LONG}" }}
"""


def _cells(output: str) -> list[list[str]]:
    """The cells of each table line."""
    return [
        [c.strip() for c in line.strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def _row(output: str, key: str) -> list[str]:
    """The row whose key column is ``key`` (wide output: one line per row)."""
    found = [cells for cells in _cells(output) if cells[0] == key]
    assert found, f"no row {key!r} in\n{output}"
    return found[0]


def test_stack_show_prints_values_and_sources_literally(stack_file: Any) -> None:
    stack_file(STACK)
    result = runner.invoke(app, ["stack", "show", "--stack", "prod"])
    assert result.exit_code == 0, result.output
    _key, value, source = _row(result.output, "secrets.required")
    assert value == json.dumps([ARN])  # ':secret:' is not an emoji, the ARN is not cut
    assert source.endswith("pyproject.toml [stacks.prod]")  # the [stacks.X] part is shown
    assert _row(result.output, "docker.env.OXEO_FLOWS_STACK")[1] == "prod"  # not OXEO-FLOWS-STACK
    assert _row(result.output, "docker.env.LONG")[1] == LONG
    assert "…" not in result.output


def test_narrow_terminal_folds_values_instead_of_cutting(stack_file: Any) -> None:
    stack_file(STACK)
    result = runner.invoke(app, ["stack", "show", "--stack", "prod"], env={"COLUMNS": "70"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 70
    assert "…" not in result.output
    column = "".join(cells[1] for cells in _cells(result.output))
    assert LONG in column  # folded over several lines, every character kept


def test_json_keeps_dictionary_keys_as_written(stack_file: Any) -> None:
    stack_file(STACK)
    result = runner.invoke(app, ["stack", "show", "--stack", "prod", "--json"])
    values = json.loads(result.output)["values"]
    assert values["docker.env.OXEO_FLOWS_STACK"]["value"] == "prod"
    assert values["secrets.required"]["value"] == [ARN]


def test_error_sources_in_brackets_are_shown(stack_file: Any) -> None:
    stack_file(STACK)
    result = runner.invoke(
        app, ["stack", "show", "--stack", "prod"], env={"OXEO_FLOWS_DASK__START_TIMEOUT": "soon"}
    )
    assert result.exit_code == 1
    assert "[from env OXEO_FLOWS_DASK__START_TIMEOUT]" in result.output


def test_missing_extra_hint_keeps_its_brackets(tmp_path: Path) -> None:
    # boto3 made unimportable in a child process: what a user without the aws extra sees.
    blocker = tmp_path / "blocked" / "boto3"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named boto3')\n")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "a.py").write_text("A = 1\n")
    done = run_cli(
        "sync",
        str(tmp_path / "project"),
        cwd=tmp_path,
        env={"OXEO_FLOWS_STORAGE__BUCKET": "oxeo-code"},
        path=(tmp_path / "blocked",),
    )
    assert done.returncode == 1, done.stderr
    assert "pip install 'oxeo-flows[aws]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_server_port_is_never_dasks() -> None:
    ports = {server_port() for _ in range(50)}
    assert not ports & RESERVED_PORTS


@pytest.mark.slow
def test_demo_is_quiet_and_its_own_server_avoids_dask_ports(tmp_path: Path) -> None:
    os.environ.pop("PREFECT_API_URL", None)  # restored after the test (tests/conftest.py)
    done = run_cli(
        "demo",
        "--tiles",
        "2",
        "-o",
        str(tmp_path / "out"),
        cwd=tmp_path,
        env={"PREFECT_HOME": str(tmp_path / "prefect-home")},
        timeout=280,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "3/3 completed" in output
    noisy = [line for line in output.splitlines() if "distributed." in line and "INFO" in line]
    assert noisy == []
    match = re.search(r"Starting temporary server on http://127\.0\.0\.1:(\d+)", output)
    assert match, output
    assert int(match.group(1)) not in RESERVED_PORTS
