"""Nothing left running: a cluster whose client was SIGKILLed shuts itself down.

A client process creates a cluster on the emulated Compute Engine / EC2 (the emulator runs in
the test process; the client is a separate process, killed with SIGKILL so that nothing of
ours runs at its end). The scheduler's no-client timeout (a few seconds here) closes it; the
worker exits with it; each VM's cloud-init then shuts it down (GCE: TERMINATED, EC2:
terminated). And a cluster whose client stays connected but runs nothing closes after the
idle timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oxeo_flows.testing._env import METADATA_ENV
from oxeo_flows.testing.compute import ComputeEmulator
from oxeo_flows.testing.ec2 import EC2Emulator
from oxeo_flows.testing.secretmanager import SecretManagerEmulator
from tests._util import wait_until

pytestmark = pytest.mark.slow

#: The client: create a cluster, connect, tell the test, wait to be killed.
CLIENT = textwrap.dedent(
    """
    import logging, sys, time
    from pathlib import Path
    from distributed import Client
    from oxeo_flows.clusters.{module} import {factory}

    cluster = {factory}(
        {args},
        n_workers=1,
        docker_image="ghcr.io/oxeo/flows:1",
        start_timeout=60,
        idle_timeout={idle},
        no_client_timeout={no_client},
        silence_logs=logging.CRITICAL,
    )
    client = Client(cluster)
    client.wait_for_workers(1, timeout=60)
    Path(sys.argv[1]).write_text(cluster.scheduler_address)
    time.sleep(600)
    """
)


@pytest.fixture
def gce() -> Iterator[ComputeEmulator]:
    # Addresses of our own: other emulators on this host use 127.10.0.x. The per-cluster TLS
    # secrets the VMs read at boot are in an emulated Secret Manager.
    with (
        SecretManagerEmulator() as secrets,
        ComputeEmulator(address_prefix="127.10.112") as emulator,
    ):
        _SECRETS["endpoint"] = secrets.endpoint
        yield emulator
        _SECRETS.clear()


@pytest.fixture
def ec2() -> Iterator[EC2Emulator]:
    with EC2Emulator(network="127.112") as emulator:
        yield emulator
        # A SIGKILLed client cannot delete its cluster's TLS secrets (`clusters cleanup`
        # does); moto's state outlives the emulator in this process, so delete them here.
        sm = emulator.client("secretsmanager")
        for secret in sm.list_secrets()["SecretList"]:
            if secret["Name"].startswith("oxeo-dask-"):
                sm.delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)


_SECRETS: dict[str, str] = {}


def _gce_args(emulator: ComputeEmulator) -> str:
    return (
        f'project="oxeo-test", zone="europe-west4-a", subnetwork="dask", '
        f'compute_endpoint="{emulator.endpoint}", '
        f'secret_manager_endpoint="{_SECRETS["endpoint"]}"'
    )


def _ec2_args(emulator: EC2Emulator) -> str:
    ami = emulator.client().describe_images()["Images"][0]["ImageId"]
    return (
        f'region="{emulator.region}", subnet="{emulator.subnet_id}", '
        f'security_groups=["{emulator.security_group_id}"], ami="{ami}", '
        f'endpoint_url="{emulator.endpoint_url}"'
    )


def _start_client(
    tmp_path: Path, module: str, factory: str, args: str, *, idle: float, no_client: float
) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "client.py"
    script.write_text(
        CLIENT.format(module=module, factory=factory, args=args, idle=idle, no_client=no_client)
    )
    ready = tmp_path / "ready"
    env = {
        **os.environ,
        **METADATA_ENV,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # moto's fixed test credentials
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ready)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 90
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if not ready.exists():
        proc.kill()
        raise AssertionError(proc.communicate()[0][-4000:])
    return proc, ready


def _gce_stopped(emulator: ComputeEmulator) -> bool:
    return emulator.processes() == [] and all(
        vm.status == "TERMINATED" for vm in emulator.vms.values()
    )


def test_sigkilled_client_leaves_no_gce_vm_running(gce: ComputeEmulator, tmp_path: Path) -> None:
    proc, _ready = _start_client(
        tmp_path, "gcp", "gcp_cluster", _gce_args(gce), idle=900, no_client=3
    )
    try:
        assert len(gce.vms) == 2
        assert gce.processes() != []
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # No client for 3 s: the scheduler closes, the worker follows, both VMs shut down.
        assert wait_until(lambda: _gce_stopped(gce), 3 + 30), {
            n: (vm.status, vm.serial_output()[-1500:]) for n, vm in gce.vms.items()
        }
        scheduler = next(vm for name, vm in gce.vms.items() if name.endswith("scheduler"))
        assert "no-client-timeout" in scheduler.serial_output()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_sigkilled_client_leaves_no_ec2_instance_running(ec2: EC2Emulator, tmp_path: Path) -> None:
    proc, _ready = _start_client(
        tmp_path, "ec2", "ec2_cluster", _ec2_args(ec2), idle=900, no_client=3
    )
    try:
        assert len(ec2.live_instances()) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert wait_until(lambda: ec2.live_instances() == [] and ec2.processes() == [], 3 + 30), [
            inst.serial_output()[-1500:] for inst in ec2.instances.values()
        ]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_connected_but_idle_cluster_shuts_down(gce: ComputeEmulator, tmp_path: Path) -> None:
    proc, _ready = _start_client(
        tmp_path, "gcp", "gcp_cluster", _gce_args(gce), idle=3, no_client=900
    )
    try:
        assert wait_until(lambda: _gce_stopped(gce), 3 + 30), {
            n: (vm.status, vm.serial_output()[-1500:]) for n, vm in gce.vms.items()
        }
        scheduler = next(vm for name, vm in gce.vms.items() if name.endswith("scheduler"))
        assert "idle" in scheduler.serial_output()
    finally:
        proc.kill()
        proc.communicate()


def test_stack_settings_reach_the_factory() -> None:
    from oxeo_flows import dask_runner, load_stack

    stack = load_stack(
        overrides={
            "gcp": {
                "project": "oxeo-test",
                "region": "europe-west4",
                "zone": "europe-west4-a",
                "network": "dask",
                "subnetwork": "dask",
            },
            "dask": {"gcp": {"docker-image": "ghcr.io/oxeo/flows:1"}},
        }
    )
    default = dask_runner("gcp", stack=stack).cluster_kwargs
    assert (default["idle_timeout"], default["no_client_timeout"]) == (900.0, 900.0)
    assert (default["parallel_boot"], default["nanny"]) == (True, True)
    off = dask_runner(
        "gcp", stack=stack, idle_timeout=0, no_client_timeout=60, parallel_boot=False, nanny=False
    ).cluster_kwargs
    assert (
        off["idle_timeout"],
        off["no_client_timeout"],
        off["parallel_boot"],
        off["nanny"],
    ) == (None, 60, False, False)
