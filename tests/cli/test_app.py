"""The oxeo-flows CLI: version, stack show, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import oxeo_flows
from oxeo_flows.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"oxeo-flows {oxeo_flows.__version__}"


def test_stack_show_json_has_sources(stack_file: Any, monkeypatch: Any) -> None:
    stack_file('[tool.oxeo-flows.stacks.prod.gcp]\nproject = "oxeo-main"\n')
    monkeypatch.setenv("OXEO_FLOWS_GCP__REGION", "europe-west4")
    result = runner.invoke(app, ["stack", "show", "--stack", "prod", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["stack"] == "prod"
    values = data["values"]
    assert values["gcp.project"]["value"] == "oxeo-main"
    assert "[stacks.prod]" in values["gcp.project"]["source"]
    assert values["gcp.region"] == {"value": "europe-west4", "source": "env OXEO_FLOWS_GCP__REGION"}
    assert values["dask.backend"] == {"value": "local", "source": "default"}


def test_stack_show_table() -> None:
    result = runner.invoke(app, ["stack", "show"])
    assert result.exit_code == 0
    assert "stack 'local'" in result.output
    assert "dask.backend" in result.output


def test_stack_show_bad_config_exits_1_without_traceback(stack_file: Any) -> None:
    stack_file('[tool.oxeo-flows.stacks.prod.gcp]\nregion = "europe-west4-a"\n')
    result = runner.invoke(app, ["stack", "show", "--stack", "prod"])
    assert result.exit_code == 1
    assert "is a zone, not a region" in result.output
    assert "Traceback" not in result.output


def test_demo_runs_the_local_pipeline(prefect_api: str, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("DEMO_API_TOKEN", "demo-canary-3f9a1c")
    out = tmp_path / "out"
    result = runner.invoke(app, ["demo", "--output", str(out), "--tiles", "6"])
    assert result.exit_code == 0, result.output
    assert "Completed" in result.output
    assert "7/7 completed" in result.output, result.output  # 6 tiles + the summary
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tiles"] == 6
    assert len(list((out / "tiles").glob("*.json"))) == 6
    assert "demo-canary-3f9a1c" not in result.output
