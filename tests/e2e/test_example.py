"""examples/gcp_vertex_dask's flow on the emulated GCP, as a user would test their own repo.

The example's ``prod`` stack is used unchanged; only its endpoints are pointed at the
emulators through environment variables (see docs/guides/testing.md).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oxeo_flows.testing.compute import ComputeEmulator
from oxeo_flows.testing.secretmanager import SecretManagerEmulator

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gcp_vertex_dask"


@pytest.fixture
def example_compute() -> Iterator[ComputeEmulator]:
    """The example's project and subnetwork."""
    with ComputeEmulator(
        project="oxeo-main", subnetworks={"europe-west4/dask-europe-west4": "127.10.0.0/16"}
    ) as emulator:
        yield emulator


def test_example_flow_runs_on_the_emulated_gcp(
    prefect_api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    example_compute: ComputeEmulator,
    secret_manager_emulator: SecretManagerEmulator,
) -> None:
    repo = tmp_path / "gcp_vertex_dask"
    shutil.copytree(EXAMPLE, repo)
    monkeypatch.chdir(repo)
    monkeypatch.syspath_prepend(str(repo))
    monkeypatch.setenv("OXEO_FLOWS_STACK", "prod")
    monkeypatch.setenv("OXEO_FLOWS_GCP__ENDPOINTS__COMPUTE", example_compute.endpoint)
    monkeypatch.setenv(
        "OXEO_FLOWS_GCP__ENDPOINTS__SECRET_MANAGER", secret_manager_emulator.endpoint
    )
    secret_manager_emulator.add("oxeo-main", "sat-extractor-sa", "token")
    try:
        from flows.extract import extract

        assert extract(tiles=["31UFU", "31UGU", "31UGV"], n_workers=1) == [
            "31UFU:5",
            "31UGU:5",
            "31UGV:5",
        ]
    finally:
        for name in [m for m in sys.modules if m == "flows" or m.startswith("flows.")]:
            del sys.modules[name]
    inserts = [c for c in example_compute.calls if c.startswith("insert ")]
    assert len(inserts) == 2  # the scheduler and the one worker the flow's parameter asked for
    example_compute.wait_idle()
    assert example_compute.vms == {}
    assert example_compute.processes() == []
