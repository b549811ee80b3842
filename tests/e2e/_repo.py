"""A user's flow repository (seed 000 / seed 003 shapes), written into a test directory."""

from __future__ import annotations

import asyncio
import functools
import uuid
from pathlib import Path
from typing import Any

PROJECT = "oxeo-test"
IMAGE = "europe-west4-docker.pkg.dev/oxeo-test/flows/extract:1"
TILES = [f"31U{chr(65 + i // 10)}{i % 10}" for i in range(20)]

EXTRACT_FLOW = '''
"""Extract satellite tiles on a private Dask cluster (seed 000)."""

import json
import os
from pathlib import Path

from prefect import flow, get_run_logger, task

from oxeo_flows import dask_runner, load_secret, ssh_key_file


@task
def extract_tile(tile: str, token_length: int) -> str:
    import socket

    return f"{tile}:{token_length}:{socket.gethostname() and 'ok'}"


@flow(name="extract", task_runner=dask_runner())
def extract(tiles: list[str], n_workers: int = 2) -> list[str]:
    token = load_secret(os.environ["SAT_TOKEN_SECRET"])
    with ssh_key_file(os.environ["DEPLOY_KEY_SECRET"]) as key:
        header = key.read_text().splitlines()[0]
    futures = extract_tile.map(tiles, len(token.get_secret_value()))
    results = [f.result() for f in futures]
    get_run_logger().info("extracted %d tiles (deploy key %s)", len(results), header)
    Path("results.json").write_text(json.dumps({"results": results, "key": header}))
    return results
'''

GCP_STACK = """
[project]
name = "extract-flows"
version = "0.1.0"

[tool.oxeo-flows]
default-stack = "prod"

[tool.oxeo-flows.stacks.prod]
runner = "vertex"
work-pool = "{pool}"

[tool.oxeo-flows.stacks.prod.gcp]
project = "{project}"
project-number = "123456789012"
region = "europe-west4"
zone = "europe-west4-a"
network = "dask"
subnetwork = "dask"
reserved-ip-ranges = ["vertex-peering"]
service-account = "prefect-runner@{project}.iam.gserviceaccount.com"
credentials-block = "{credentials}"

[tool.oxeo-flows.stacks.prod.gcp.endpoints]
compute = "{compute}"
secret-manager = "{secret_manager}"
aiplatform = "{aiplatform}"

[tool.oxeo-flows.stacks.prod.vertex]
image = "{image}"
machine-type = "n1-standard-8"
api-key-secret = "prefect-api-key"
job-watch-poll-interval = 0.2

[tool.oxeo-flows.stacks.prod.storage]
# The image holds the project (the emulator maps the image to the repository).
image-code-dir = "{repo}"

[tool.oxeo-flows.stacks.prod.vertex.env]
# Names only: the flow loads the values at run time. The stack name travels in the
# deployment (deploy_flow sets OXEO_FLOWS_STACK).
SAT_TOKEN_SECRET = "sat-extractor-sa"
DEPLOY_KEY_SECRET = "github-deploy-key"

[tool.oxeo-flows.stacks.prod.dask]
backend = "gcp"
start-timeout = {start_timeout}
n-workers = 2

[tool.oxeo-flows.stacks.prod.dask.gcp]
docker-image = "{image}"

[tool.oxeo-flows.stacks.prod.secrets]
sources = ["gcp"]
"""


def write_repo(root: Path, stack: str, flow: str = EXTRACT_FLOW) -> Path:
    """The repository: pyproject.toml with the stack, flows/extract.py."""
    (root / "flows").mkdir(parents=True, exist_ok=True)
    (root / "flows" / "__init__.py").write_text("")
    (root / "flows" / "extract.py").write_text(flow)
    (root / "pyproject.toml").write_text(stack)
    return root


@functools.cache
def deploy_key() -> str:
    """A throwaway OpenSSH private key (the repository's deploy key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _run_from_deployment(deployment_id: Any, parameters: dict[str, Any]) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        run = await client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
        return run.id


def create_flow_run(deployment_id: Any, parameters: dict[str, Any]) -> Any:
    return asyncio.run(_run_from_deployment(deployment_id, parameters))


def read_flow_run(flow_run_id: Any) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def task_run_states(flow_run_id: Any) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted(r.state.type.value for r in runs if r.state is not None)


def serve_once(endpoint: str, pool: str) -> None:
    """One poll of prefect-gcp's real VertexAIWorker (on the emulator); waits for the job."""
    from oxeo_flows.testing.vertex import emulated_vertex_worker

    async def serve() -> None:
        with emulated_vertex_worker(endpoint) as worker_class:
            async with worker_class(work_pool_name=pool, prefetch_seconds=60) as worker:
                await worker.get_and_submit_flow_runs()

    asyncio.run(serve())


GCE_STACK = """
[tool.oxeo-flows]
default-stack = "gce"

[tool.oxeo-flows.stacks.gce.gcp]
project = "oxeo-test"
region = "europe-west4"
zone = "europe-west4-a"
network = "dask"
subnetwork = "dask"

[tool.oxeo-flows.stacks.gce.gcp.endpoints]
compute = "{compute}"
secret-manager = "{secret_manager}"

[tool.oxeo-flows.stacks.gce.dask]
backend = "gcp"
start-timeout = {start_timeout}
n-workers = 1

[tool.oxeo-flows.stacks.gce.dask.gcp]
docker-image = "europe-west4-docker.pkg.dev/oxeo-test/flows/extract:1"
"""
