"""The emulators themselves: the Compute API validates like the real one, faults, booting."""

from __future__ import annotations

from typing import Any

import pytest

from oxeo_flows.testing._boot import bind_command, parse_user_data
from oxeo_flows.testing.compute import ComputeEmulator

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
