"""The emulators themselves: the Compute API validates like the real one, faults, booting."""

from __future__ import annotations

from typing import Any

import pytest

from oxeo_flows.testing._boot import bind_command, parse_user_data
from oxeo_flows.testing.compute import ComputeEmulator
from tests._util import wait_until

ZONE = "europe-west4-a"


def _client(emulator: ComputeEmulator) -> Any:
    from oxeo_flows.clusters.gcp import compute_client

    return compute_client(emulator.endpoint)


def _body(name: str = "vm-1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "machineType": f"zones/{ZONE}/machineTypes/e2-standard-2",
        "networkInterfaces": [
            {"subnetwork": "projects/oxeo-test/regions/europe-west4/subnetworks/dask"}
        ],
        "labels": {"team": "flows"},
        "metadata": {"items": [{"key": "user-data", "value": "#cloud-config\nruncmd: []\n"}]},
    }
    body.update(extra)
    return body


def _insert_error(emulator: ComputeEmulator, body: dict[str, Any]) -> Any:
    from googleapiclient.errors import HttpError

    with pytest.raises(HttpError) as info:
        _client(emulator).instances().insert(project="oxeo-test", zone=ZONE, body=body).execute()
    return info.value


@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [
        ({"name": "Bad_Name"}, 400, "resource.name"),
        ({"machineType": f"zones/{ZONE}/machineTypes/e2-huge-99"}, 400, "does not exist in zone"),
        ({"machineType": "zones/us-central1-a/machineTypes/e2-standard-2"}, 400, "machineType"),
        (
            {
                "networkInterfaces": [
                    {"subnetwork": "projects/oxeo-test/regions/us-central1/subnetworks/dask"}
                ]
            },
            400,
            "same region",
        ),
        (
            {
                "networkInterfaces": [
                    {"subnetwork": "projects/oxeo-test/regions/europe-west4/subnetworks/nope"}
                ]
            },
            400,
            "cannot be found",
        ),
        ({"labels": {"Team": "x"}}, 400, "Label keys"),
        ({"labels": {"team": "A B"}}, 400, "Label keys"),
        (
            {"metadata": {"items": [{"key": "user-data", "value": "x" * (256 * 1024 + 1)}]}},
            400,
            "256 KB",
        ),
        (
            {"guestAccelerators": [{"acceleratorCount": 1, "acceleratorType": "nvidia-tesla-t4"}]},
            400,
            "Accelerators are not supported",
        ),
    ],
)
def test_insert_validates_like_the_real_api(
    compute_emulator: ComputeEmulator, change: dict[str, Any], status: int, needle: str
) -> None:
    error = _insert_error(compute_emulator, _body(**change))
    assert error.resp.status == status
    assert needle in str(error)
    assert compute_emulator.vms == {}


def test_address_at_insert_list_filter_serial_and_delete(
    compute_emulator: ComputeEmulator,
) -> None:
    compute = _client(compute_emulator).instances()
    op = compute.insert(project="oxeo-test", zone=ZONE, body=_body()).execute()
    assert op["kind"] == "compute#operation"
    got = compute.get(project="oxeo-test", zone=ZONE, instance="vm-1").execute()
    assert got["networkInterfaces"][0]["networkIP"] == "127.10.0.2"
    assert got["status"] in ("PROVISIONING", "STAGING", "RUNNING")
    listed = compute.list(project="oxeo-test", zone=ZONE, filter="labels.team = flows").execute()
    assert [i["name"] for i in listed["items"]] == ["vm-1"]
    none = compute.list(project="oxeo-test", zone=ZONE, filter="labels.team = db").execute()
    assert "items" not in none
    agg = compute.aggregatedList(project="oxeo-test", filter="labels.team:*").execute()
    assert agg["items"][f"zones/{ZONE}"]["instances"][0]["name"] == "vm-1"
    compute_emulator.wait_idle()
    serial = compute.getSerialPortOutput(project="oxeo-test", zone=ZONE, instance="vm-1").execute()
    assert "networkIP 127.10.0.2" in serial["contents"]
    deleted = compute.delete(project="oxeo-test", zone=ZONE, instance="vm-1").execute()
    _client(compute_emulator).zoneOperations().wait(
        project="oxeo-test", zone=ZONE, operation=deleted["name"]
    ).execute()
    assert compute_emulator.vms == {}


def test_quota_and_unavailable_faults(compute_emulator: ComputeEmulator) -> None:
    compute_emulator.quota_exceeded()
    error = _insert_error(compute_emulator, _body())
    assert error.resp.status == 403
    assert "Quota 'CPUS' exceeded" in str(error)
    compute_emulator.fail_next(503, method="list")
    from googleapiclient.errors import HttpError

    with pytest.raises(HttpError) as info:
        _client(compute_emulator).instances().list(project="oxeo-test", zone=ZONE).execute()
    assert info.value.resp.status == 503


def test_cloud_init_becomes_env_and_a_bound_command() -> None:
    run = (
        'docker run --net=host  -e EXTRA="1"  daskdev/dask:latest env '
        'DASK_INTERNAL_INHERIT_CONFIG="abc=" python -m distributed.cli.dask_scheduler --port 8786'
    )
    user_data = (
        "#cloud-config\npackages:\n  - curl\nruncmd:\n  - apt-get update -y\n"
        f"  - '{run}'\n  - shutdown -h now\n"
    )
    plan = parse_user_data(user_data)
    assert plan.image == "daskdev/dask:latest"
    assert plan.env == {"EXTRA": "1", "DASK_INTERNAL_INHERIT_CONFIG": "abc="}
    assert plan.shutdown
    assert "apt-get update -y" in plan.bootstrap
    argv, role = bind_command(plan.command, "127.10.0.9")
    assert role == "scheduler"
    assert argv[argv.index("--host") + 1] == "127.10.0.9"
    spec = '{"cls": "dask.distributed.Nanny", "opts": {"name": "w"}}'
    argv, role = bind_command(
        ["python", "-m", "distributed.cli.dask_spec", "tls://127.10.0.9:8786", "--spec", spec],
        "127.10.0.10",
    )
    assert role == "worker"
    assert '"host": "127.10.0.10"' in argv[-1]


def _custom_job(pools: list[tuple[list[str], int]]) -> Any:
    from google.cloud.aiplatform_v1.types import custom_job

    return custom_job.CustomJob(
        display_name="job",
        job_spec=custom_job.CustomJobSpec(
            worker_pool_specs=[
                custom_job.WorkerPoolSpec(
                    replica_count=count,
                    machine_spec={"machine_type": "n1-standard-4"},
                    container_spec=custom_job.ContainerSpec(
                        image_uri="img:1",
                        command=command,
                        env=[{"name": "GREETING", "value": "hello"}],
                    ),
                )
                for command, count in pools
            ]
        ),
    )


def _submit(endpoint: str, job: Any) -> str:
    import asyncio

    from oxeo_flows.testing.vertex import async_client

    async def create() -> str:
        client = async_client(endpoint)
        created = await client.create_custom_job(parent="projects/p/locations/l", custom_job=job)
        return str(created.name)

    return asyncio.run(create())


def test_vertex_runs_every_replica_with_a_cluster_spec(tmp_path: Any) -> None:
    import json
    import sys

    from oxeo_flows.testing.vertex import VertexEmulator

    chief = (
        "import json, os, time; spec = json.loads(os.environ['CLUSTER_SPEC']); "
        "print('spec', json.dumps(spec), os.environ['GREETING'], os.getcwd()); time.sleep(0.5)"
    )
    with VertexEmulator(workdir=tmp_path) as vertex:
        name = _submit(
            vertex.endpoint,
            _custom_job(
                [
                    ([sys.executable, "-c", chief], 1),
                    ([sys.executable, "-c", "import time; time.sleep(60)"], 2),
                ]
            ),
        )
        vertex.wait_idle()
        assert vertex.states(name) == [
            "JOB_STATE_PENDING",
            "JOB_STATE_RUNNING",
            "JOB_STATE_SUCCEEDED",
        ]
        line = next(x for x in vertex.output(name).splitlines() if x.startswith("spec "))
        spec = json.loads(line.split(" ", 1)[1].rsplit(" hello ", 1)[0])
        assert line.endswith(f" hello {tmp_path}")
        assert spec["task"] == {"type": "workerpool0", "index": 0}
        assert len(spec["cluster"]["workerpool1"]) == 2
        assert all(h.startswith("127.30.0.") for h in spec["cluster"]["workerpool1"])
        assert vertex.processes() == []  # the other replicas were stopped with the chief


def test_vertex_failed_container_and_cancel() -> None:
    import asyncio
    import sys

    from oxeo_flows.testing.vertex import VertexEmulator, async_client

    fail = "import sys; print('Traceback: boom', file=sys.stderr); sys.exit(3)"
    with VertexEmulator() as vertex:
        failed = _submit(vertex.endpoint, _custom_job([([sys.executable, "-c", fail], 1)]))
        slow = _submit(
            vertex.endpoint,
            _custom_job([([sys.executable, "-c", "import time; time.sleep(60)"], 1)]),
        )
        assert wait_until(lambda: vertex.state(slow) == "JOB_STATE_RUNNING", 60)

        async def cancel() -> None:
            await async_client(vertex.endpoint).cancel_custom_job(name=slow)

        async def get() -> Any:
            return await async_client(vertex.endpoint).get_custom_job(name=failed)

        asyncio.run(cancel())
        vertex.wait_idle()
        failed_job = asyncio.run(get())
        assert vertex.state(slow) == "JOB_STATE_CANCELLED"
        assert vertex.state(failed) == "JOB_STATE_FAILED"
        assert "non-zero status of 3" in failed_job.error.message
        assert "Traceback: boom" in failed_job.error.message
        assert vertex.processes() == []
