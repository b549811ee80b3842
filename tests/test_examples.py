"""Every example's local path runs: its flows, under its own `local` stack, on a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect.flows import load_flow_from_entrypoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(example: str, entrypoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    # The flows build their task runner from the stack at import: point at the example's file.
    monkeypatch.setenv("OXEO_FLOWS_CONFIG", str(EXAMPLES / example / "pyproject.toml"))
    monkeypatch.setenv("OXEO_FLOWS_STACK", "local")
    return load_flow_from_entrypoint(str(EXAMPLES / example / entrypoint))


def test_gcp_vertex_dask_runs_locally(prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAT_EXTRACTOR_SA", "x" * 12)  # the local stack reads secrets from env
    extract = _load("gcp_vertex_dask", "flows/extract.py:extract", monkeypatch)
    assert extract(tiles=["31UFU", "31UGU", "31UFV"]) == ["31UFU:12", "31UGU:12", "31UFV:12"]


def test_aws_docker_s3_runs_locally(prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    flows = _load("aws_docker_s3", "flows/testflow.py:concurrent_flows", monkeypatch)
    assert flows(max_delay=0.0) == ["finished FIRST", "finished SECOND"]


def test_local_pipeline_runs_as_a_script_flow(
    prefect_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEMO_API_TOKEN", "t" * 16)
    pipeline = _load("local_pipeline", "flows/pipeline.py:pipeline", monkeypatch)
    result = pipeline(tiles=["a", "b"], output_dir=str(tmp_path))
    assert (result["tasks"], result["completed"]) == (3, 3)
    assert Path(result["summary"]).is_file()
