"""Seed 000 end to end on the emulated GCP.

deploy_flow (vertex pool ensured) → prefect-gcp's real VertexAIWorker submits the flow run to
the emulated Vertex AI → the job runs ``python -m oxeo_flows.vertex_entrypoint ... prefect
flow-run execute`` (API key from Secret Manager) in the flow repo → the flow reads its SSH
deploy key and a token from Secret Manager → ``dask_runner()`` (``dask.backend = "gcp"``)
starts a TLS cluster of emulated GCE VMs on private addresses → 20 tile tasks → Completed →
every VM deleted, no process left.

The stack name travels in the deployment (``OXEO_FLOWS_STACK``, set by deploy_flow; as in
examples/gcp_vertex_dask); the endpoints travel in the repo's stack file.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from oxeo_flows.testing.compute import ComputeEmulator
from oxeo_flows.testing.secretmanager import SecretManagerEmulator
from oxeo_flows.testing.vertex import VertexEmulator
from tests.e2e._repo import (
    PROJECT,
    TILES,
    create_flow_run,
    deploy_key,
    read_flow_run,
    serve_once,
    task_run_states,
    unique,
)

pytestmark = pytest.mark.slow


def test_vertex_job_runs_the_flow_on_a_private_tls_gce_cluster(
    gcp_repo: dict[str, Any],
    compute_emulator: ComputeEmulator,
    vertex_emulator: VertexEmulator,
    secret_manager_emulator: SecretManagerEmulator,
) -> None:
    from oxeo_flows import deploy_flow

    # A name of its own: the session's server keeps other tests' deployments (on other pools).
    result = deploy_flow("flows/extract.py:extract", name=unique("extract"), stack="prod")
    assert result.runner == "vertex"
    assert result.work_pool == gcp_repo["pool"]
    flow_run_id = create_flow_run(result.deployment_id, {"tiles": TILES})
    serve_once(vertex_emulator.endpoint, gcp_repo["pool"])

    run = read_flow_run(flow_run_id)
    (job,) = vertex_emulator.job_names
    output = vertex_emulator.output(job)
    assert run.state.is_completed(), (run.state, output[-4000:])
    assert vertex_emulator.state(job) == "JOB_STATE_SUCCEEDED"
    assert run.infrastructure_pid == job

    # The flow's results, its task runs and its secrets.
    written = json.loads((gcp_repo["repo"] / "results.json").read_text())
    assert written["results"] == [f"{tile}:19:ok" for tile in TILES]
    assert written["key"] == "-----BEGIN OPENSSH PRIVATE KEY-----"
    assert task_run_states(flow_run_id) == ["COMPLETED"] * 20
    assert "extracted 20 tiles" in output
    # Loaded secrets are masked (the PEM armor line is public; the key's body is not).
    assert deploy_key().splitlines()[1] not in output
    accessed = secret_manager_emulator.accessed
    assert f"projects/{PROJECT}/secrets/prefect-api-key/versions/latest" in accessed
    assert f"projects/{PROJECT}/secrets/github-deploy-key/versions/latest" in accessed
    assert "pnu_emulated-key-0123456789" not in str(vertex_emulator.created[0])

    # The cluster: a scheduler and two workers on private loopback addresses, over TLS.
    inserts = [c for c in compute_emulator.calls if c.startswith("insert ")]
    deletes = [c for c in compute_emulator.calls if c.startswith("delete ")]
    assert len(inserts) == 3
    assert sum(c.endswith("-scheduler") for c in inserts) == 1
    assert sorted(d.split()[1] for d in deletes) == sorted(i.split()[1] for i in inserts)
    assert "tls://127.10.0." in output
    compute_emulator.wait_idle()
    vertex_emulator.wait_idle()
    assert compute_emulator.vms == {}
    assert compute_emulator.processes() == []
    assert vertex_emulator.processes() == []
