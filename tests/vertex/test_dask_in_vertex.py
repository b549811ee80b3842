"""``dask.backend = "vertex"``: the pool's template carries the Dask worker pool, rendered by
prefect-gcp's own `_build_job_spec`; warm-start settings reach the CustomJobSpec too."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from oxeo_flows import ensure_vertex_pool
from oxeo_flows.errors import ConfigError
from oxeo_flows.stack import load_stack
from tests.vertex.conftest import STACK, with_credentials
from tests.vertex.test_render import API_KEY, _render

DASK = """
[tool.oxeo-flows.stacks.prod.dask]
backend = "vertex"
start-timeout = 120

[tool.oxeo-flows.stacks.prod.dask.vertex]
worker-count = 3
worker-machine-type = "n1-standard-8"
worker-accelerator-type = "NVIDIA_TESLA_T4"
worker-disk-size-gb = 200
"""


def _spec(pool: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_KEY, temporary_settings
    from prefect_gcp.workers.vertex import VertexAIWorker

    with get_client(sync_client=True) as client:
        template = client.read_work_pool(pool).base_job_template
    with temporary_settings({PREFECT_API_KEY: API_KEY}):
        config = _render(template, {})
    return template, VertexAIWorker(work_pool_name=pool)._build_job_spec(config)


def test_the_job_carries_a_dask_worker_pool(
    stack_file: Any, gcp_credentials_block: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_file(STACK + DASK)
    monkeypatch.setenv("OXEO_FLOWS_GCP__ENDPOINTS__SECRET_MANAGER", "127.0.0.1:9")
    pool = f"vertex-dask-{uuid.uuid4().hex[:8]}"
    assert ensure_vertex_pool(pool, stack=with_credentials(gcp_credentials_block)).action == (
        "created"
    )
    assert ensure_vertex_pool(pool, stack=with_credentials(gcp_credentials_block)).action == (
        "unchanged"
    )
    template, spec = _spec(pool)
    flow_pool, dask_pool = spec.worker_pool_specs
    assert flow_pool.replica_count == 1
    assert dask_pool.replica_count == 3
    assert dask_pool.machine_spec.machine_type == "n1-standard-8"
    assert dask_pool.machine_spec.accelerator_type.name == "NVIDIA_TESLA_T4"
    assert dask_pool.machine_spec.accelerator_count == 1
    assert dask_pool.disk_spec.boot_disk_size_gb == 200
    # Same image as the flow run (the pool's `image` variable), our worker entrypoint.
    assert dask_pool.container_spec.image_uri == flow_pool.container_spec.image_uri
    assert list(dask_pool.container_spec.command) == [
        "python",
        "-m",
        "oxeo_flows.vertex_worker",
        "--project",
        "oxeo-test",
        "--port",
        "8786",
        "--timeout",
        "120",
        "--secret-manager-endpoint",
        "127.0.0.1:9",
    ]
    assert {e.name: e.value for e in dask_pool.container_spec.env} == {"OXEO_FLOWS_STACK": "prod"}
    flow_env = {e.name: e.value for e in flow_pool.container_spec.env}
    assert flow_env["OXEO_FLOWS_STACK"] == "prod"
    assert API_KEY not in str(spec)  # nothing secret in either worker pool
    assert template["x-oxeo-flows"]["extensions"] == ["job_spec.worker_pool_specs.1"]

    # Back to another backend: the extension is removed again, not left behind.
    monkeypatch.setenv("OXEO_FLOWS_DASK__BACKEND", "local")
    result = ensure_vertex_pool(pool, stack=with_credentials(gcp_credentials_block))
    assert result.action == "updated"
    _, spec = _spec(pool)
    assert len(spec.worker_pool_specs) == 1


def test_warm_start_settings_reach_the_custom_job_spec(
    stack_file: Any, gcp_credentials_block: str
) -> None:
    stack_file(
        STACK.replace(
            "job-watch-poll-interval = 0.05\n",
            'job-watch-poll-interval = 0.05\npersistent-resource-id = "warm-t4"\n',
        )
    )
    pool = f"vertex-warm-{uuid.uuid4().hex[:8]}"
    ensure_vertex_pool(pool, stack=with_credentials(gcp_credentials_block))
    _, spec = _spec(pool)
    assert spec.persistent_resource_id == "warm-t4"


def test_psc_interface_instead_of_peering(stack_file: Any) -> None:
    from oxeo_flows import vertex_job

    stack_file(
        STACK.replace(
            "job-watch-poll-interval = 0.05\n",
            'job-watch-poll-interval = 0.05\npsc-network-attachment = "flows-attachment"\n',
        )
    )
    job = vertex_job()
    assert job.network is None  # PSC-I replaces VPC peering
    assert job.job_spec_extensions() == {
        "job_spec.psc_interface_config": {
            "network_attachment": (
                "projects/oxeo-test/regions/europe-west4/networkAttachments/flows-attachment"
            )
        }
    }


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            '[tool.oxeo-flows.stacks.bad]\nrunner = "process"\ndask.backend = "vertex"\n',
            "set runner = 'vertex'",
        ),
        (
            '[tool.oxeo-flows.stacks.bad]\nrunner = "vertex"\n'
            '[tool.oxeo-flows.stacks.bad.dask]\nbackend = "vertex"\n'
            "vertex.worker-accelerator-count = 2\n",
            "worker-accelerator-type is not set",
        ),
        (
            '[tool.oxeo-flows.stacks.bad]\nrunner = "vertex"\n'
            '[tool.oxeo-flows.stacks.bad.dask.vertex]\nworker-machine-type = "n1 standard"\n',
            "dask.vertex.worker-machine-type",
        ),
        (
            '[tool.oxeo-flows.stacks.bad]\nrunner = "vertex"\n'
            "[tool.oxeo-flows.stacks.bad.dask.vertex]\nworker-count = 0\n",
            "dask.vertex.worker-count",
        ),
    ],
)
def test_bad_dask_vertex_settings_fail_at_load(stack_file: Any, body: str, fragment: str) -> None:
    stack_file(body)
    with pytest.raises(ConfigError, match=fragment):
        load_stack("bad")
