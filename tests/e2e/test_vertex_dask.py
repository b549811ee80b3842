"""``dask.backend = "vertex"`` end to end on the emulated Vertex AI (multi-replica, CLUSTER_SPEC).

deploy_flow (the pool's template carries a second worker pool) → prefect-gcp's real
VertexAIWorker → the emulated job runs the flow run on replica workerpool0-0 and
``python -m oxeo_flows.vertex_worker`` on each workerpool1 replica → the flow hosts a TLS
scheduler, the workers fetch their certificate from the per-job secret and join → 20 tasks run
on the worker replicas → Completed, the secret deleted, every replica process gone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from oxeo_flows.testing.secretmanager import SecretManagerEmulator
from oxeo_flows.testing.vertex import VertexEmulator
from tests.e2e._repo import (
    IMAGE,
    PROJECT,
    TILES,
    create_flow_run,
    read_flow_run,
    serve_once,
    task_run_states,
    unique,
    write_repo,
)
from tests.vertex.conftest import service_account_info

pytestmark = pytest.mark.slow

FLOW = '''
"""Tiles on the Dask workers of this Vertex job."""

import json
from pathlib import Path

from prefect import flow, task

from oxeo_flows import dask_runner


@task
def where(tile: str) -> str:
    import os

    from distributed import get_worker

    seed = os.environ.get("PYTHONHASHSEED", "")
    return f"{tile}@{get_worker().name}@{seed}@{hash('oxeo-flows')}"


@flow(name="tiles", task_runner=dask_runner())
def tiles(tiles: list[str]) -> list[str]:
    results = [f.result() for f in where.map(tiles)]
    Path("results.json").write_text(json.dumps(results))
    return results
'''

STACK = """
[tool.oxeo-flows]
default-stack = "prod"

[tool.oxeo-flows.stacks.prod]
runner = "vertex"
work-pool = "{pool}"

[tool.oxeo-flows.stacks.prod.gcp]
project = "{project}"
region = "europe-west4"
service-account = "prefect-runner@{project}.iam.gserviceaccount.com"
credentials-block = "{credentials}"

[tool.oxeo-flows.stacks.prod.gcp.endpoints]
secret-manager = "{secret_manager}"
aiplatform = "{aiplatform}"

[tool.oxeo-flows.stacks.prod.vertex]
image = "{image}"
private-network = false          # no peering needed: Dask stays inside the job
api-key-secret = "prefect-api-key"
job-watch-poll-interval = 0.2

[tool.oxeo-flows.stacks.prod.storage]
image-code-dir = "{repo}"

[tool.oxeo-flows.stacks.prod.dask]
backend = "vertex"
start-timeout = {start_timeout}

[tool.oxeo-flows.stacks.prod.dask.vertex]
worker-count = 2
{worker_image}
[tool.oxeo-flows.stacks.prod.secrets]
sources = ["gcp"]
"""


def flow_run_logs(flow_run_id: Any) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


BROKEN_IMAGE = "europe-west4-docker.pkg.dev/oxeo-test/flows/broken:1"


@pytest.fixture
def vertex_dask_repo(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: str,
    vertex_emulator: VertexEmulator,
    secret_manager_emulator: SecretManagerEmulator,
) -> Any:
    from prefect_gcp import GcpCredentials

    def make(*, start_timeout: float = 90, broken_workers: bool = False) -> dict[str, Any]:
        credentials = unique("vertex-submitter")
        GcpCredentials(service_account_info=service_account_info(), project=PROJECT).save(
            credentials
        )
        secret_manager_emulator.add(PROJECT, "prefect-api-key", "pnu_emulated-key-0123456789")
        pool = unique("prod-vertex-dask")
        repo = tmp_path / "repo"
        worker_image = f'worker-image = "{BROKEN_IMAGE}"\n' if broken_workers else ""
        write_repo(
            repo,
            STACK.format(
                pool=pool,
                project=PROJECT,
                credentials=credentials,
                secret_manager=secret_manager_emulator.endpoint,
                aiplatform=vertex_emulator.endpoint,
                image=IMAGE,
                repo=repo,
                start_timeout=start_timeout,
                worker_image=worker_image,
            ),
            flow=FLOW,
        )
        vertex_emulator.image_dirs[IMAGE] = repo
        if broken_workers:
            # An image without a working oxeo-flows: the worker replicas die at start.
            broken = tmp_path / "broken"
            (broken / "oxeo_flows").mkdir(parents=True)
            (broken / "oxeo_flows" / "__init__.py").write_text(
                'raise ImportError("this image has no working oxeo-flows")\n'
            )
            vertex_emulator.image_dirs[BROKEN_IMAGE] = broken
        monkeypatch.chdir(repo)
        return {"repo": repo, "pool": pool}

    return make


def _run(repo: dict[str, Any], vertex: VertexEmulator) -> tuple[Any, str, str]:
    from oxeo_flows import deploy_flow

    with pytest.warns(UserWarning, match="private-network is false"):  # no peering needed here
        result = deploy_flow("flows/extract.py:tiles", name=unique("tiles"), stack="prod")
    flow_run_id = create_flow_run(result.deployment_id, {"tiles": TILES})
    serve_once(vertex.endpoint, repo["pool"])
    (job,) = vertex.job_names
    return read_flow_run(flow_run_id), job, vertex.output(job)


def _no_leftovers(vertex: VertexEmulator, secrets: SecretManagerEmulator) -> None:
    vertex.wait_idle()
    assert vertex.processes() == []
    assert [n for (_, n) in secrets.secrets if n.startswith("oxeo-dask-")] == []


def test_tasks_run_on_the_jobs_worker_replicas(
    vertex_dask_repo: Any,
    vertex_emulator: VertexEmulator,
    secret_manager_emulator: SecretManagerEmulator,
) -> None:
    repo = vertex_dask_repo()
    run, job, output = _run(repo, vertex_emulator)
    assert run.state.is_completed(), (run.state, output[-4000:])
    assert vertex_emulator.state(job) == "JOB_STATE_SUCCEEDED"
    created = vertex_emulator.created[0].custom_job.job_spec
    assert [p.replica_count for p in created.worker_pool_specs] == [1, 2]
    assert "BEGIN" not in str(created)  # no certificate or key in the job spec

    results = json.loads((repo["repo"] / "results.json").read_text())
    assert [r.split("@")[0] for r in results] == TILES
    assert {r.split("@")[1] for r in results} <= {"workerpool1-0", "workerpool1-1"}
    # No Nanny on a replica: it re-executed itself with the environment a Nanny gives its
    # worker, so both replicas hash alike.
    assert {r.split("@")[2] for r in results} == {"6640"}
    assert len({r.split("@")[3] for r in results}) == 1
    assert task_run_states(run.id) == ["COMPLETED"] * 20
    assert "joined tls://127.30.0." in output  # the workers reached the scheduler over TLS
    assert secret_manager_emulator.calls["CreateSecret"] == 1
    assert secret_manager_emulator.calls["DeleteSecret"] == 1
    _no_leftovers(vertex_emulator, secret_manager_emulator)


def test_worker_replicas_that_crash_at_start_fail_the_flow_within_the_deadline(
    vertex_dask_repo: Any,
    vertex_emulator: VertexEmulator,
    secret_manager_emulator: SecretManagerEmulator,
) -> None:
    repo = vertex_dask_repo(start_timeout=8, broken_workers=True)
    run, _job, output = _run(repo, vertex_emulator)
    assert run.state.is_failed(), (run.state, output[-4000:])
    logs = "\n".join([run.state.message or "", *flow_run_logs(run.id), output])
    assert "0 of 2 Dask worker replicas joined" in logs, logs[-3000:]
    assert "127.30.0." in logs  # the replicas expected, by address
    assert "this image has no working oxeo-flows" in output
    _no_leftovers(vertex_emulator, secret_manager_emulator)


def test_a_scheduler_that_never_comes_up_fails_the_flow_and_the_workers_give_up(
    vertex_dask_repo: Any,
    vertex_emulator: VertexEmulator,
    secret_manager_emulator: SecretManagerEmulator,
) -> None:
    repo = vertex_dask_repo(start_timeout=6)
    secret_manager_emulator.fail(grpc.StatusCode.PERMISSION_DENIED, method="CreateSecret")
    run, _job, output = _run(repo, vertex_emulator)
    assert run.state.is_failed(), (run.state, output[-4000:])
    logs = "\n".join([run.state.message or "", *flow_run_logs(run.id), output])
    assert "could not create the per-job Dask TLS secret" in logs, logs[-3000:]
    _no_leftovers(vertex_emulator, secret_manager_emulator)
