"""End to end on the emulated clouds: the oxeo_flows.testing plugin's guard and fixtures.

Every test here runs under the loopback guard (autouse ``loopback_guard``), with the real
Prefect server of tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oxeo_flows.testing import _plugin
from oxeo_flows.testing.compute import ComputeEmulator
from oxeo_flows.testing.secretmanager import SecretManagerEmulator
from oxeo_flows.testing.vertex import VertexEmulator
from tests.e2e._repo import GCP_STACK, IMAGE, PROJECT, deploy_key, unique, write_repo
from tests.vertex.conftest import service_account_info

# The plugin's fixtures (what `pytest -p oxeo_flows.testing` gives a flow repository).
compute_emulator = _plugin.compute_emulator
ec2_emulator = _plugin.ec2_emulator
loopback_guard = _plugin.loopback_guard
secret_manager_emulator = _plugin.secret_manager_emulator
vertex_emulator = _plugin.vertex_emulator
pytest_runtest_call = _plugin.pytest_runtest_call


@pytest.fixture
def gcp_repo(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: str,
    compute_emulator: ComputeEmulator,
    vertex_emulator: VertexEmulator,
    secret_manager_emulator: SecretManagerEmulator,
) -> dict[str, Any]:
    from prefect_gcp import GcpCredentials

    credentials = unique("vertex-submitter")
    GcpCredentials(service_account_info=service_account_info(), project=PROJECT).save(credentials)
    sm = secret_manager_emulator
    sm.add(PROJECT, "prefect-api-key", "pnu_emulated-key-0123456789")
    sm.add(PROJECT, "sat-extractor-sa", "token-of-length-19!")
    sm.add(PROJECT, "github-deploy-key", deploy_key())
    pool = unique("prod-vertex")
    repo = write_repo(
        tmp_path / "repo",
        GCP_STACK.format(
            repo=tmp_path / "repo",
            pool=pool,
            project=PROJECT,
            credentials=credentials,
            compute=compute_emulator.endpoint,
            secret_manager=sm.endpoint,
            aiplatform=vertex_emulator.endpoint,
            image=IMAGE,
            start_timeout=90,
        ),
    )
    # The image's contents: the emulated job runs in the flow repository.
    vertex_emulator.image_dirs[IMAGE] = repo
    monkeypatch.chdir(repo)
    return {"repo": repo, "pool": pool}
