"""Parallel boot on the emulated Compute Engine: worker VMs are created while the scheduler boots.

dask-cloudprovider inserts worker VMs only after the scheduler answers; ours are inserted as
soon as GCE has assigned the scheduler VM its ``networkIP`` (at insert). The workers retry
until the scheduler listens. A failed start deletes every VM, the early workers included.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from oxeo_flows.errors import ClusterError, ClusterStartTimeout
from oxeo_flows.testing.compute import ComputeEmulator
from oxeo_flows.testing.secretmanager import SecretManagerEmulator

pytestmark = pytest.mark.slow


#: The per-cluster TLS secrets the VMs read at boot live here (``secret_manager_endpoint``).
_SECRETS: dict[str, str] = {}


@pytest.fixture(autouse=True)
def secret_manager() -> Iterator[SecretManagerEmulator]:
    with SecretManagerEmulator() as emulator:
        _SECRETS["endpoint"] = emulator.endpoint
        yield emulator
        _SECRETS.clear()


@pytest.fixture
def gce() -> Iterator[ComputeEmulator]:
    # Addresses of our own: other emulators on this host use 127.10.0.x.
    with ComputeEmulator(address_prefix="127.10.113") as emulator:
        yield emulator


def _cluster(emulator: ComputeEmulator, **kwargs: Any) -> Any:
    from oxeo_flows.clusters.gcp import gcp_cluster

    options: dict[str, Any] = {
        "project": "oxeo-test",
        "zone": "europe-west4-a",
        "subnetwork": "dask",
        "n_workers": 2,
        "docker_image": "ghcr.io/oxeo/flows:1",
        "compute_endpoint": emulator.endpoint,
        "secret_manager_endpoint": _SECRETS["endpoint"],
        "start_timeout": 60,
        "silence_logs": logging.CRITICAL,
    }
    options.update(kwargs)
    return gcp_cluster(**options)


def test_workers_are_created_before_the_scheduler_answers(gce: ComputeEmulator) -> None:
    # The scheduler port drops every connection: it never answers.
    gce.firewall(8786, mode="drop")
    with pytest.raises(ClusterStartTimeout) as info:
        _cluster(gce, start_timeout=8)
    # Both workers' VMs were inserted while we waited for the scheduler...
    names = [c.split()[1] for c in gce.calls if c.startswith("insert ")]
    assert names[0].endswith("-scheduler")
    assert sum("-worker-" in n for n in names) == 2
    # ... and, the start having failed, every VM is gone, workers included.
    assert "every VM it created has been deleted" in str(info.value)
    gce.wait_idle()
    assert gce.vms == {}
    assert gce.processes() == []


def test_serial_boot_is_an_opt_out(gce: ComputeEmulator) -> None:
    gce.firewall(8786, mode="drop")
    with pytest.raises(ClusterStartTimeout):
        _cluster(gce, start_timeout=5, parallel_boot=False)
    names = [c.split()[1] for c in gce.calls if c.startswith("insert ")]
    assert len(names) == 1
    assert names[0].endswith("-scheduler")
    gce.wait_idle()
    assert gce.vms == {}


def test_early_workers_join_a_scheduler_that_came_up_later(gce: ComputeEmulator) -> None:
    from distributed import Client

    cluster = _cluster(gce)
    try:
        with Client(cluster, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        # The workers were told to give up on a scheduler that never comes, at the deadline.
        worker = next(vm for name, vm in gce.vms.items() if "-worker-" in name)
        assert worker.plan is not None
        assert '"death_timeout": "60s"' in " ".join(worker.plan.command)
    finally:
        cluster.close()
    gce.wait_idle()
    assert gce.processes() == []


def test_a_worker_vm_that_cannot_be_created_fails_the_start_at_once(gce: ComputeEmulator) -> None:
    # GCE refuses the workers' machine type (400) while the scheduler VM boots fine.
    with pytest.raises(ClusterError) as info:
        _cluster(gce, worker_machine_type="e2-standrd-4", start_timeout=600)
    assert not isinstance(info.value, ClusterStartTimeout)
    text = str(info.value)
    assert "A worker VM of cluster" in text
    assert "e2-standrd-4" in text
    assert "Every VM of the cluster has been deleted" in text
    gce.wait_idle()
    assert gce.vms == {}
    assert gce.processes() == []


def test_a_dead_scheduler_takes_the_early_workers_with_it() -> None:
    # A VM takes a moment to boot (as a real one does): the workers are inserted meanwhile.
    with ComputeEmulator(address_prefix="127.10.114", boot_delay=1.0) as gce:
        _dead_scheduler(gce)


def _dead_scheduler(gce: ComputeEmulator) -> None:
    gce.die_at_boot("scheduler")
    with pytest.raises(ClusterError) as info:
        _cluster(gce, start_timeout=600)
    assert not isinstance(info.value, ClusterStartTimeout)
    assert "emulated fault: the scheduler died at boot" in str(info.value)
    names = [c.split()[1] for c in gce.calls if c.startswith("insert ")]
    assert sum("-worker-" in n for n in names) == 2
    gce.wait_idle()
    assert gce.vms == {}
    assert gce.processes() == []
