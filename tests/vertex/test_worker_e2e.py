"""End to end: our pool and job variables → deployment → real VertexAIWorker → fake JobService.

Everything is real except Vertex itself: the Prefect server, prefect-gcp's worker (only the
place where it creates its JobService client is overridden, to dial the in-repo fake on
127.0.0.1 in plaintext), and google-cloud-aiplatform's client and messages.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from oxeo_flows import ensure_vertex_pool, vertex_job
from oxeo_flows._redact import is_loaded_secret, register_secret_value
from oxeo_flows.testing.vertex import VertexEmulator as FakeJobService
from oxeo_flows.testing.vertex import async_client
from oxeo_flows.vertex import ENTRYPOINT_MODULE
from tests.vertex.conftest import NUMBER, SA, with_credentials

API_KEY = "pnu_worker-key-that-must-not-leak-9876543210"


def _loopback_worker_class() -> Any:
    from prefect_gcp.workers.vertex import VertexAIWorker

    class LoopbackVertexWorker(VertexAIWorker):  # type: ignore[misc]
        """prefect-gcp's worker; its JobService client dials the fake instead of Google."""

        endpoint: ClassVar[str] = ""

        async def run(self, flow_run: Any, configuration: Any, task_status: Any = None) -> Any:
            endpoint = self.endpoint

            def get_job_service_async_client(client_options: Any = None) -> Any:
                return async_client(endpoint)

            credentials = configuration.credentials.model_copy()
            object.__setattr__(
                credentials, "get_job_service_async_client", get_job_service_async_client
            )
            configuration.credentials = credentials
            return await super().run(flow_run, configuration, task_status)

    return LoopbackVertexWorker


@pytest.fixture
def worker_class() -> Iterator[Any]:
    """The loopback worker class; the real VertexAIWorker is put back in Prefect's registry."""
    from prefect.utilities.dispatch import get_registry_for_type
    from prefect.workers.base import BaseWorker
    from prefect_gcp.workers.vertex import VertexAIWorker

    with warnings.catch_warnings():
        # Prefect registers every worker subclass under its type and warns that the test
        # double replaces VertexAIWorker there; the registry is restored below.
        warnings.filterwarnings(
            "ignore", message="Type 'LoopbackVertexWorker'", category=UserWarning
        )
        cls = _loopback_worker_class()
    yield cls
    registry = get_registry_for_type(BaseWorker)
    if registry is not None:
        registry["vertex-ai"] = VertexAIWorker


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def _deploy_and_run(pool: str, variables: dict[str, Any]) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        flow_id = await client.create_flow_from_name(f"extract-{uuid.uuid4().hex[:6]}")
        deployment_id = await client.create_deployment(
            flow_id=flow_id,
            name="extract-vertex",
            work_pool_name=pool,
            job_variables=variables,
            entrypoint="flows/extract.py:extract",
        )
        flow_run = await client.create_flow_run_from_deployment(deployment_id)
        return flow_run.id


async def _serve_once(worker_class: Any, pool: str) -> None:
    async with worker_class(work_pool_name=pool, prefetch_seconds=60) as worker:
        await worker.get_and_submit_flow_runs()


async def _state(flow_run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_flow_run(flow_run_id)


def test_worker_submits_private_job_and_follows_it(
    prod_stack: Any, gcp_credentials_block: str, jobservice: FakeJobService, worker_class: Any
) -> None:
    from prefect.settings import PREFECT_API_KEY, temporary_settings

    register_secret_value("sat-token-value-loaded-at-runtime")  # as load_secret would
    pool = f"vertex-e2e-{uuid.uuid4().hex[:8]}"
    assert (
        ensure_vertex_pool(
            pool, vertex_job(stack=prod_stack), stack=with_credentials(gcp_credentials_block)
        ).action
        == "created"
    )
    worker_class.endpoint = jobservice.endpoint
    variables = vertex_job(stack=prod_stack).job_variables()
    logs = _Records()
    logger = logging.getLogger("prefect.flow_runs.worker")
    logger.addHandler(logs)
    try:
        with temporary_settings({PREFECT_API_KEY: API_KEY}):  # the worker's own key
            ok_id = asyncio.run(_deploy_and_run(pool, variables))
            asyncio.run(_serve_once(worker_class, pool))

            # --- the job the fake received
            (request,) = jobservice.created
            assert request.parent == "projects/oxeo-test/locations/europe-west4"
            spec = request.custom_job.job_spec
            assert spec.network == f"projects/{NUMBER}/global/networks/dask"
            assert list(spec.reserved_ip_ranges) == ["vertex-peering"]
            assert spec.service_account == SA
            assert spec.scheduling.strategy.name == "SPOT"
            assert spec.scheduling.timeout.total_seconds() == 24 * 3600
            container = spec.worker_pool_specs[0].container_spec
            env = {e.name: e.value for e in container.env}
            assert env["SAT_TOKEN_SECRET"] == "sat-extractor-sa"  # a name, not a value
            assert "PREFECT_API_KEY" not in env
            assert not any(is_loaded_secret(v) for v in env.values())
            assert API_KEY not in str(request)
            assert ENTRYPOINT_MODULE in list(container.command)
            assert request.custom_job.labels["prefect-io_flow-run-id"] == str(ok_id)

            # --- its states were followed to the end
            (job_name,) = jobservice.job_names
            assert jobservice.states(job_name) == [
                "JOB_STATE_PENDING",
                "JOB_STATE_RUNNING",
                "JOB_STATE_SUCCEEDED",
            ]
            ok_run = asyncio.run(_state(ok_id))
            assert ok_run.infrastructure_pid == job_name
            assert not ok_run.state.is_crashed()

            # --- a FAILED job crashes the flow run, and the job's error is reported
            jobservice.fail_next("The replica workerpool0-0 exited with a non-zero status of 137.")
            failed_id = asyncio.run(_deploy_and_run(pool, variables))
            asyncio.run(_serve_once(worker_class, pool))
    finally:
        logger.removeHandler(logs)
    failed_job = jobservice.job_names[1]
    assert jobservice.states(failed_job) == [
        "JOB_STATE_PENDING",
        "JOB_STATE_RUNNING",
        "JOB_STATE_FAILED",
    ]
    failed_run = asyncio.run(_state(failed_id))
    assert failed_run.state.is_crashed()
    assert "non-zero status code 1" in (failed_run.state.message or "")
    # prefect-gcp reports the job's own error message in the flow run's logs.
    assert any(
        "failed: The replica workerpool0-0 exited with a non-zero status of 137." in m
        for m in logs.messages
    ), logs.messages
