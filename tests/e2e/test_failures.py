"""What goes wrong on the emulated clouds, and what the user sees.

- the scheduler's container dies at boot: the start fails at once (not at the deadline) with
  the VM's serial console in the message, and every VM is deleted;
- the Vertex job fails before its container starts: the flow run is Crashed and the job's
  error is in the worker's log;
- the flow-run process gets SIGTERM (a cancellation): its GCE cluster is deleted;
- a firewall drops the scheduler port: `ClusterStartTimeout` within the deadline + 1 s, with
  the checklist.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from oxeo_flows.errors import ClusterError, ClusterStartTimeout
from oxeo_flows.testing.compute import ComputeEmulator
from oxeo_flows.testing.secretmanager import SecretManagerEmulator
from oxeo_flows.testing.vertex import VertexEmulator
from tests.clusters.test_cancel import SCRIPT_TEMPLATE
from tests.e2e._repo import (
    GCE_STACK,
    TILES,
    create_flow_run,
    read_flow_run,
    serve_once,
    unique,
)

pytestmark = pytest.mark.slow


def _gce_stack(
    tmp_path: Path, compute: ComputeEmulator, sm: SecretManagerEmulator, *, start_timeout: float
) -> None:
    # The VMs read their TLS certificates from Secret Manager (dask.tls.vm-certificates).
    (tmp_path / "pyproject.toml").write_text(
        GCE_STACK.format(
            compute=compute.endpoint, secret_manager=sm.endpoint, start_timeout=start_timeout
        )
    )


def test_scheduler_that_dies_at_boot_fails_fast_with_its_serial_output(
    prefect_api: str,
    tmp_path: Path,
    compute_emulator: ComputeEmulator,
    secret_manager_emulator: SecretManagerEmulator,
) -> None:
    from prefect import flow, task

    from oxeo_flows import dask_runner

    compute_emulator.die_at_boot("scheduler")
    # A deadline the test would time out on (pytest-timeout): failing fast is the point.
    _gce_stack(tmp_path, compute_emulator, secret_manager_emulator, start_timeout=600)

    @task
    def one() -> int:
        return 1

    @flow(task_runner=dask_runner())
    def uses_dask() -> int:
        return one.submit().result()

    state = uses_dask(return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ClusterError)
    assert not isinstance(error, ClusterStartTimeout)
    text = str(error)
    assert "scheduler VM dask-" in text
    assert "TERMINATED" in text
    assert "emulated fault: the scheduler died at boot" in text  # from the serial console
    assert "cloud-init[skipped]: apt-get update -y" in text
    assert "Every VM of the cluster has been deleted" in text
    # Parallel boot: the worker VM was inserted while the scheduler booted; it is gone too.
    inserted = [c.split()[1] for c in compute_emulator.calls if c.startswith("insert")]
    assert inserted[0].endswith("-scheduler")
    assert sum("-worker-" in name for name in inserted) == 1
    assert any(c.startswith("getSerialPortOutput dask-") for c in compute_emulator.calls)
    compute_emulator.wait_idle()
    assert compute_emulator.vms == {}
    assert compute_emulator.processes() == []


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_failed_vertex_job_crashes_the_flow_run_with_the_jobs_error(
    gcp_repo: dict[str, Any], vertex_emulator: VertexEmulator, compute_emulator: ComputeEmulator
) -> None:
    from oxeo_flows import deploy_flow

    message = (
        "Quota 'custom_model_training_cpus' exceeded: 8 requested, 4 available in europe-west4."
    )
    vertex_emulator.fail_next(message)
    # A name of its own: the session's server keeps other tests' deployments (on other pools).
    result = deploy_flow("flows/extract.py:extract", name=unique("extract"), stack="prod")
    flow_run_id = create_flow_run(result.deployment_id, {"tiles": TILES})
    logs = _Records()
    logger = logging.getLogger("prefect.flow_runs.worker")
    logger.addHandler(logs)
    try:
        serve_once(vertex_emulator.endpoint, gcp_repo["pool"])
    finally:
        logger.removeHandler(logs)
    (job,) = vertex_emulator.job_names
    assert vertex_emulator.states(job) == ["JOB_STATE_PENDING", "JOB_STATE_FAILED"]
    run = read_flow_run(flow_run_id)
    assert run.state.is_crashed(), run.state
    assert any(message in m for m in logs.messages), logs.messages
    assert vertex_emulator.processes() == []
    assert compute_emulator.calls == []  # the flow never ran: no VM


# The cancellation test's flow, on the stack's Dask backend (here: gcp on the emulator).
SIGTERM_FLOW = SCRIPT_TEMPLATE.replace("RUNNER", "dask_runner()")


def test_sigterm_of_the_flow_run_process_deletes_the_gce_cluster(
    prefect_api: str,
    tmp_path: Path,
    compute_emulator: ComputeEmulator,
    secret_manager_emulator: SecretManagerEmulator,
) -> None:
    from oxeo_flows.testing._env import process_env

    _gce_stack(tmp_path, compute_emulator, secret_manager_emulator, start_timeout=120)
    script = tmp_path / "flow.py"
    script.write_text(SIGTERM_FLOW, encoding="utf-8")
    started = tmp_path / "started"
    env = process_env({"PREFECT_API_URL": prefect_api, "PREFECT_LOGGING_LEVEL": "INFO"})
    proc = subprocess.Popen(
        [sys.executable, str(script), str(started)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert started.exists(), proc.communicate(timeout=30)[0][-4000:]
        assert started.read_text().startswith("tls://127.10.0.")
        assert len(compute_emulator.vms) == 2  # scheduler + one worker
        proc.send_signal(signal.SIGTERM)
        (tmp_path / "release").write_text("")
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, output[-3000:]
    deletes = sorted(c.split()[1] for c in compute_emulator.calls if c.startswith("delete "))
    inserts = sorted(c.split()[1] for c in compute_emulator.calls if c.startswith("insert "))
    assert deletes == inserts, output[-3000:]
    compute_emulator.wait_idle()
    assert compute_emulator.vms == {}
    assert compute_emulator.processes() == []


def test_dropped_scheduler_port_times_out_within_the_deadline_with_the_checklist(
    compute_emulator: ComputeEmulator, secret_manager_emulator: SecretManagerEmulator
) -> None:
    from oxeo_flows.clusters.gcp import gcp_cluster

    compute_emulator.firewall(8786, mode="drop")
    deadline = 5.0
    started = time.monotonic()
    with pytest.raises(ClusterStartTimeout) as info:
        gcp_cluster(
            project="oxeo-test",
            zone="europe-west4-a",
            network="dask",
            subnetwork="dask",
            n_workers=1,
            docker_image="europe-west4-docker.pkg.dev/oxeo-test/flows/extract:1",
            start_timeout=deadline,
            compute_endpoint=compute_emulator.endpoint,
            secret_manager_endpoint=secret_manager_emulator.endpoint,
        )
    elapsed = time.monotonic() - started
    # The behaviour under test is the deadline itself (dask-cloudprovider waits forever).
    assert elapsed < deadline + 1.0, elapsed
    text = str(info.value)
    assert "tls://127.10.0." in text
    assert "did not answer within the start deadline of 5 s" in text
    assert "2. firewall:" in text
    assert "gcloud compute instances get-serial-port-output dask-" in text
    compute_emulator.wait_idle()
    assert compute_emulator.vms == {}
    assert compute_emulator.processes() == []


def test_ec2_scheduler_that_dies_at_boot_fails_fast(ec2_emulator: Any) -> None:
    from oxeo_flows.clusters.ec2 import ec2_cluster

    emu = ec2_emulator
    emu.die_at_boot("scheduler")
    ami = emu.client().describe_images()["Images"][0]["ImageId"]
    with pytest.raises(ClusterError) as info:
        ec2_cluster(
            region="eu-west-1",
            subnet=emu.subnet_id,
            security_groups=[emu.security_group_id],
            vpc=emu.vpc_id,
            ami=ami,
            n_workers=1,
            docker_image="daskdev/dask:latest",
            start_timeout=600,  # failing fast is the point
            endpoint_url=emu.endpoint_url,
        )
    assert not isinstance(info.value, ClusterStartTimeout)
    text = str(info.value)
    assert "The Dask scheduler VM i-" in text
    assert "(ec2)" in text
    assert "Every VM of the cluster has been deleted" in text
    # Parallel boot: the worker instance booted too; the scheduler's console has the fault.
    consoles = [inst.console_output() for inst in emu.instances.values()]
    assert any("emulated fault: the scheduler died at boot" in text for text in consoles)
    emu.wait_idle()
    assert emu.live_instances() == []
    assert emu.processes() == []
