"""A named, reusable GCE cluster (``dask.reuse``) on the emulated GCP.

Run 1 starts the cluster and leaves it running (its client TLS pair in the per-cluster
secret, nowhere on disk); run 2 finds it by its labels and connects (no VM inserted);
``oxeo-flows clusters stop NAME`` deletes its VMs and secrets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from oxeo_flows.testing.compute import ComputeEmulator
from oxeo_flows.testing.secretmanager import SecretManagerEmulator

pytestmark = pytest.mark.slow

STACK = """
[tool.oxeo-flows]
default-stack = "shared"

[tool.oxeo-flows.stacks.shared.gcp]
project = "oxeo-test"
region = "europe-west4"
zone = "europe-west4-a"
network = "dask"
subnetwork = "dask"

[tool.oxeo-flows.stacks.shared.gcp.endpoints]
compute = "{compute}"
secret-manager = "{secret_manager}"

[tool.oxeo-flows.stacks.shared.dask]
backend = "gcp"
start-timeout = 60
n-workers = 1
cluster-name = "{name}"
reuse = true

[tool.oxeo-flows.stacks.shared.dask.gcp]
docker-image = "europe-west4-docker.pkg.dev/oxeo-test/flows/x:1"
"""


def _run_flow(tag: str) -> Any:
    from prefect import flow, task

    from oxeo_flows import dask_runner

    @task
    def square(x: int) -> int:
        return x * x

    @flow(name=f"reuse-{tag}", task_runner=dask_runner())
    def squares() -> int:
        return sum(f.result() for f in square.map(range(4)))

    return squares(return_state=True)


def test_a_named_cluster_outlives_its_run_is_reused_and_stopped(
    prefect_api: str,
    tmp_path: Path,
    compute_emulator: ComputeEmulator,
    secret_manager_emulator: SecretManagerEmulator,
) -> None:
    from oxeo_flows.cli import app

    compute, sm = compute_emulator, secret_manager_emulator
    name = "shared-reuse-1"
    (tmp_path / "pyproject.toml").write_text(
        STACK.format(compute=compute.endpoint, secret_manager=sm.endpoint, name=name)
    )
    base = f"oxeo-dask-{name}"

    first = _run_flow("first")
    assert first.is_completed(), first.message
    assert first.result() == 14
    inserts = [c for c in compute.calls if c.startswith("insert ")]
    assert len(inserts) == 2  # scheduler + one worker
    assert not [c for c in compute.calls if c.startswith("delete ")]
    assert len(compute.vms) == 2  # still running after the run
    assert sorted(n for (_p, n) in sm.secrets) == [
        f"{base}-client",
        f"{base}-scheduler",
        f"{base}-worker",
    ]
    # The client pair is in the secret only: nothing written to the working directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pyproject.toml"]

    second = _run_flow("second")
    assert second.is_completed(), second.message
    assert second.result() == 14
    assert [c for c in compute.calls if c.startswith("insert ")] == inserts  # no new VM
    assert f"projects/oxeo-test/secrets/{base}-client/versions/latest" in sm.accessed

    stopped = CliRunner().invoke(app, ["clusters", "stop", name, "--stack", "shared"])
    assert stopped.exit_code == 0, stopped.output
    assert f"Stopped Dask cluster {name}: deleted 2 VM(s)" in stopped.output
    compute.wait_idle()
    assert compute.vms == {}
    assert compute.processes() == []
    assert sm.secrets == {}


EC2_STACK = """
[tool.oxeo-flows]
default-stack = "shared"

[tool.oxeo-flows.stacks.shared.aws]
region = "{region}"
endpoint-url = "{endpoint}"
vpc = "{vpc}"
subnets = ["{subnet}"]
security-groups = ["{group}"]

[tool.oxeo-flows.stacks.shared.dask]
backend = "ec2"
start-timeout = 60
n-workers = 1
cluster-name = "{name}"
reuse = true

[tool.oxeo-flows.stacks.shared.dask.ec2]
ami = "{ami}"
docker-image = "x/flows:1"
"""


def test_a_named_ec2_cluster_is_found_by_its_tags_and_stopped(
    tmp_path: Path, ec2_emulator: Any
) -> None:
    from oxeo_flows import dask_runner
    from oxeo_flows.cli import app

    emu = ec2_emulator
    name = "shared-reuse-2"
    (tmp_path / "pyproject.toml").write_text(
        EC2_STACK.format(
            region=emu.region,
            endpoint=emu.endpoint_url,
            vpc=emu.vpc_id,
            subnet=emu.subnet_id,
            group=emu.security_group_id,
            ami=emu.client().describe_images()["Images"][0]["ImageId"],
            name=name,
        )
    )
    sm = emu.client("secretsmanager")

    def run() -> int:
        runner: Any = dask_runner()
        with runner:
            return int(runner.client.submit(lambda x: x + 1, 41).result(timeout=60))

    assert run() == 42
    booted = set(emu.instances)
    assert len(booted) == 2
    assert len(emu.live_instances()) == 2  # still running after the runner closed
    assert len(sm.list_secrets()["SecretList"]) == 3
    assert run() == 42
    assert set(emu.instances) == booted  # connected, nothing launched

    stopped = CliRunner().invoke(app, ["clusters", "stop", name])
    assert stopped.exit_code == 0, stopped.output
    assert f"Stopped Dask cluster {name}: deleted 2 VM(s)" in stopped.output
    emu.wait_idle()
    assert emu.live_instances() == []
    assert sm.list_secrets()["SecretList"] == []
    assert emu.processes() == []
