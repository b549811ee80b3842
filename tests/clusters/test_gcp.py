"""GCE VM bodies from dask-cloudprovider's own ``GCPInstance.create_gcp_config()``, offline.

The cluster is built with ``asynchronous=True`` outside a start (no VM is created, no API is
called) and with a locally generated service-account key, so Google's client library never
makes a request. Then each instance renders the exact body ``instances.insert`` would get.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from oxeo_flows import dask_runner, load_stack

FLOW_RUN = "0b9d2a52-6c1e-4a7e-9d1e-2f6a4c1f0e11"


@pytest.fixture(scope="module")
def fake_sa_info() -> dict[str, str]:
    """Service-account info with a throwaway key; the token URI is a closed loopback port."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "client_email": "dask@oxeo-main.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": "http://127.0.0.1:9/token",
        "project_id": "oxeo-main",
    }


def _stack() -> Any:
    return load_stack(
        overrides={
            "gcp": {
                "project": "oxeo-main",
                "region": "europe-west4",
                "zone": "europe-west4-b",
                "network": "dask",
                "subnetwork": "dask-europe-west4",
                "host-project": "oxeo-network",
                "service-account": "dask-vm@oxeo-main.iam.gserviceaccount.com",
            }
        }
    )


def _bodies(
    runner: Any, sa: dict[str, str], **extra: Any
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Build the cluster (not started) and render the scheduler and a worker body."""

    async def build() -> tuple[Any, dict[str, Any], dict[str, Any]]:
        kwargs = {
            **runner.cluster_kwargs,
            "asynchronous": True,
            "service_account_credentials": sa,
            "flow_run_id": FLOW_RUN,
            "cluster_name": "oxeo-test0001",
            **extra,
        }
        cluster = runner.cluster_class(**kwargs)
        scheduler = cluster.scheduler_class(**cluster.scheduler_options)
        scheduler.cloud_init = cluster.render_process_cloud_init(scheduler)
        cluster.scheduler_internal_ip, cluster.scheduler_port = "10.10.0.2", 8786
        worker = cluster.worker_class("tls://10.10.0.2:8786", **cluster.worker_options)
        worker.cloud_init = cluster.render_process_cloud_init(worker)
        return cluster, scheduler.create_gcp_config(), worker.create_gcp_config()

    return asyncio.run(build())


def _snapshot() -> dict[str, Any]:
    import dask.config

    return copy.deepcopy(dask.config.config)


def test_vm_bodies_are_private_labelled_and_sized(fake_sa_info: dict[str, str]) -> None:
    import dask_cloudprovider.gcp  # noqa: F401 - registers its config defaults first
    import distributed  # noqa: F401

    before = _snapshot()
    runner = dask_runner(
        "gcp",
        stack=_stack(),
        gcp={
            "docker_image": "eu.gcr.io/oxeo-main/flows:1",
            "preemptible": True,
            "ngpus": 2,
            "gpu_type": "nvidia-tesla-t4",
            "worker_machine_type": "n1-highmem-8",
            "labels": {"team": "eo"},
        },
    )
    cluster, sched, worker = _bodies(runner, fake_sa_info)
    subnet = "projects/oxeo-network/regions/europe-west4/subnetworks/dask-europe-west4"
    for body in (sched, worker):
        (nic,) = body["networkInterfaces"]
        assert "accessConfigs" not in nic  # no external IP
        assert nic["subnetwork"] == subnet
        assert body["labels"]["oxeo-flows-cluster"] == "oxeo-test0001"
        assert body["labels"]["oxeo-flows-flow-run"] == FLOW_RUN
        assert body["labels"]["team"] == "eo"
        assert body["serviceAccounts"][0]["email"] == "dask-vm@oxeo-main.iam.gserviceaccount.com"
    assert sched["scheduling"]["preemptible"] == "false"
    assert worker["scheduling"] == {
        "preemptible": "true",
        "onHostMaintenance": "TERMINATE",
        "automaticRestart": "false",
        "nodeAffinities": [],
    }
    assert "guestAccelerators" not in sched
    assert worker["guestAccelerators"] == [
        {
            "acceleratorCount": 2,
            "acceleratorType": (
                "projects/oxeo-main/zones/europe-west4-b/acceleratorTypes/nvidia-tesla-t4"
            ),
        }
    ]
    assert worker["machineType"].endswith("/machineTypes/n1-highmem-8")
    assert sched["machineType"].endswith("/machineTypes/e2-standard-2")
    # The VMs (and only they) inherit the TLS material, through their own cloud-init.
    user_data = {i["key"]: i["value"] for i in sched["metadata"]["items"]}["user-data"]
    assert "DASK_INTERNAL_INHERIT_CONFIG" in user_data
    assert cluster.protocol == "tls"
    import dask.config

    shipped = dask.config.deserialize(cluster._oxeo_inherit)
    assert shipped["distributed"]["comm"]["require-encryption"] is True
    assert "BEGIN CERTIFICATE" in shipped["distributed"]["comm"]["tls"]["ca-file"]
    # ...and the process-wide dask config is exactly as before: no certificates, no
    # require-encryption, no public_ingress change, no label mutation.
    assert _snapshot() == before
    assert dask.config.get("cloudprovider.gcp.public_ingress") is True
    assert "oxeo-flows-cluster" not in dask.config.get("cloudprovider.gcp.instance_labels")


def test_a_later_plain_cluster_is_not_forced_into_tls(fake_sa_info: dict[str, str]) -> None:
    from distributed import Client, LocalCluster

    runner = dask_runner("gcp", stack=_stack(), gcp={"docker_image": "eu.gcr.io/oxeo-main/flows:1"})
    _bodies(runner, fake_sa_info)
    with (
        LocalCluster(
            n_workers=1, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None
        ) as plain,
        Client(plain) as client,
    ):
        assert plain.scheduler_address.startswith("tcp://127.0.0.1:")
        assert client.submit(sum, [1, 2, 3]).result() == 6


def test_public_ip_is_an_explicit_opt_in(fake_sa_info: dict[str, str]) -> None:
    runner = dask_runner(
        "gcp",
        stack=_stack(),
        gcp={"docker_image": "eu.gcr.io/oxeo-main/flows:1", "public_ip": True},
    )
    _cluster, sched, _worker = _bodies(runner, fake_sa_info)
    assert sched["networkInterfaces"][0]["accessConfigs"][0]["type"] == "ONE_TO_ONE_NAT"


def test_gpu_free_default_avoids_the_str_int_bug(fake_sa_info: dict[str, str]) -> None:
    runner = dask_runner(
        "gcp", stack=_stack(), gcp={"source_image": "packer-1636725840", "bootstrap": False}
    )
    assert runner.cluster_kwargs["ngpus"] == 0
    cluster, sched, worker = _bodies(runner, fake_sa_info)
    assert (cluster.scheduler_ngpus, cluster.worker_ngpus) == (0, 0)
    assert "guestAccelerators" not in worker
    assert sched["disks"][0]["initializeParams"]["sourceImage"] == (
        "projects/oxeo-main/global/images/packer-1636725840"
    )
