"""``oxeo-flows deploy`` and ``oxeo-flows sync`` through typer's runner."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from oxeo_flows.cli import app
from tests.storage._s3util import make_bucket, remote_keys, s3_client, write_tree

FLOW = """\
from prefect import flow


@flow(name="cli-flow")
def f(x: int = 1) -> int:
    return x
"""


def test_sync_command_uploads_then_reports_nothing_to_do(tmp_path: Path, moto: str) -> None:
    client = s3_client()
    make_bucket(client)
    root = write_tree(tmp_path / "p", {"a.py": "a", "b/c.py": "c"})
    runner = CliRunner()
    args = ["sync", str(root), "--bucket", "oxeo-code", "--folder", "cli", "-v"]
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would upload 2" in dry.output
    assert remote_keys(client, "oxeo-code") == []
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "uploaded 2" in first.output
    assert "+ b/c.py" in first.output
    again = runner.invoke(app, args)
    assert "uploaded 0 file(s)" in again.output
    assert "2 unchanged" in again.output


def test_sync_command_bad_bucket_exits_1_without_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sync", str(tmp_path), "--bucket", "Bad_Bucket"])
    assert result.exit_code == 1
    assert "S3 bucket name 'Bad_Bucket'" in result.output
    assert "Traceback" not in result.output


def test_deploy_command_dry_run_then_real(tmp_path: Path, prefect_api: str) -> None:
    root = write_tree(tmp_path / "repo", {"flows/f.py": FLOW})
    os.chdir(root)
    runner = CliRunner()
    args = ["deploy", "flows/f.py:f", "--name", "cli", "--param", "x=5", "--tag", "t1"]
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "[dry run] deployment cli-flow/cli: would create" in dry.output
    real = runner.invoke(app, args)
    assert real.exit_code == 0, real.output
    assert "deployment cli-flow/cli: created" in real.output
    assert "work pool local-process (process)" in real.output
    again = runner.invoke(app, args)
    assert "deployment cli-flow/cli: unchanged" in again.output


def test_deploy_command_bad_entrypoint_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", "missing.py:f", "--name", "x"])
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert "Traceback" not in result.output
