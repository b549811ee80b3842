"""Our job variables rendered by prefect-gcp itself, from the pool's stored template."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from oxeo_flows import ensure_vertex_pool, vertex_job
from oxeo_flows.pools import default_base_job_template
from oxeo_flows.vertex import ENTRYPOINT_MODULE
from tests.vertex.conftest import NUMBER, SA, with_credentials

API_KEY = "pnu_worker-key-that-must-not-leak-0123456789"


def test_job_variables_are_declared_by_the_pool_type(prod_stack: Any) -> None:
    variables = vertex_job(stack=prod_stack).job_variables()
    declared = default_base_job_template("vertex-ai")["variables"]["properties"]
    assert set(variables) <= set(declared)
    assert variables["network"] == f"projects/{NUMBER}/global/networks/dask"
    assert variables["reserved_ip_ranges"] == ["vertex-peering"]
    assert variables["maximum_run_time_hours"] == 24  # not Prefect's 1 h
    assert variables["service_account_name"] == SA
    assert variables["scheduling"] == {"strategy": "SPOT", "restart_job_on_worker_restart": True}
    assert variables["env"] == {"SAT_TOKEN_SECRET": "sat-extractor-sa", "PREFECT_API_KEY": None}
    assert variables["command"] == (
        f"python -m {ENTRYPOINT_MODULE} --api-key-secret "
        "projects/oxeo-test/secrets/prefect-api-key -- prefect flow-run execute"
    )


def _render(template: dict[str, Any], values: dict[str, Any]) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect_gcp.workers.vertex import VertexAIWorkerJobConfiguration

    async def go() -> Any:
        async with get_client() as client:
            config = await VertexAIWorkerJobConfiguration.from_template_and_values(
                template, values, client=client
            )
        config.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="brave-fox"))
        return config

    return asyncio.run(go())


def test_custom_job_spec_from_prefect_gcp(prod_stack: Any, gcp_credentials_block: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_KEY, temporary_settings
    from prefect_gcp.workers.vertex import VertexAIWorker

    pool = f"vertex-render-{uuid.uuid4().hex[:8]}"
    ensure_vertex_pool(
        pool, vertex_job(stack=prod_stack), stack=with_credentials(gcp_credentials_block)
    )
    with get_client(sync_client=True) as client:
        template = client.read_work_pool(pool).base_job_template
    # The deployment overrides a few pool defaults, as flow.deploy(job_variables=...) would.
    values = vertex_job(
        stack=prod_stack, max_run_time_hours=6, scheduling_strategy="FLEX_START", max_wait_hours=0.5
    ).job_variables()
    with temporary_settings({PREFECT_API_KEY: API_KEY}):  # the worker's own key
        config = _render(template, values)
    assert config.credentials.project == "oxeo-test"  # the block reference was resolved

    spec = VertexAIWorker(work_pool_name=pool)._build_job_spec(config)

    assert spec.network == f"projects/{NUMBER}/global/networks/dask"
    assert list(spec.reserved_ip_ranges) == ["vertex-peering"]
    assert spec.service_account == SA
    (worker_pool,) = spec.worker_pool_specs
    assert worker_pool.machine_spec.machine_type == "n1-highmem-8"
    assert worker_pool.machine_spec.accelerator_type.name == "NVIDIA_TESLA_T4"
    assert worker_pool.machine_spec.accelerator_count == 2
    assert worker_pool.disk_spec.boot_disk_type == "pd-standard"
    assert worker_pool.disk_spec.boot_disk_size_gb == 200
    assert spec.scheduling.timeout.total_seconds() == 6 * 3600
    assert spec.scheduling.strategy.name == "FLEX_START"
    assert spec.scheduling.max_wait_duration.total_seconds() == 1800
    assert spec.scheduling.restart_job_on_worker_restart is True

    container = worker_pool.container_spec
    env = {e.name: e.value for e in container.env}
    assert env["SAT_TOKEN_SECRET"] == "sat-extractor-sa"
    assert "PREFECT__FLOW_RUN_ID" in env
    assert "PREFECT_API_KEY" not in env  # removed: the entrypoint reads it from Secret Manager
    assert API_KEY not in str(spec)
    assert list(container.command[:4]) == ["python", "-m", ENTRYPOINT_MODULE, "--api-key-secret"]
    assert list(container.command[-4:]) == ["--", "prefect", "flow-run", "execute"]


def test_without_api_key_secret_the_worker_key_is_in_plain_text(
    prod_stack: Any, gcp_credentials_block: str
) -> None:
    """Documents prefect-gcp's behaviour that `api_key_secret` exists to avoid."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_KEY, temporary_settings
    from prefect_gcp.workers.vertex import VertexAIWorker

    pool = f"vertex-plain-{uuid.uuid4().hex[:8]}"
    job = vertex_job(stack=prod_stack, api_key_secret=None)
    ensure_vertex_pool(pool, job, stack=with_credentials(gcp_credentials_block))
    with get_client(sync_client=True) as client:
        template = client.read_work_pool(pool).base_job_template
    with temporary_settings({PREFECT_API_KEY: API_KEY}):
        config = _render(template, job.job_variables())
    spec = VertexAIWorker(work_pool_name=pool)._build_job_spec(config)
    env = {e.name: e.value for e in spec.worker_pool_specs[0].container_spec.env}
    assert env["PREFECT_API_KEY"] == API_KEY
    assert list(spec.worker_pool_specs[0].container_spec.command) == [
        "prefect",
        "flow-run",
        "execute",
    ]
