"""Seed 003 end to end on the emulated AWS.

deploy_flow syncs the code to S3 (moto) → a process worker (another process, another
directory) pulls it → the flow runs on ``dask_runner()`` with ``dask.backend = "ec2"``: a TLS
cluster of EC2 instances that the emulator boots on their private addresses in
``127.20.1.0/24`` → Completed → every instance terminated, no process left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oxeo_flows.testing.ec2 import EC2Emulator
from tests.e2e._repo import create_flow_run, read_flow_run, task_run_states, unique

pytestmark = pytest.mark.slow

TESTFLOW = '''
"""The seed's testflow, on an ephemeral Dask cluster of private EC2 instances."""

import json
from pathlib import Path

from prefect import flow, task

from oxeo_flows import dask_runner


@task
def my_flow(param: str) -> str:
    return f"finished {param}"


@flow(name="testflow", task_runner=dask_runner())
def concurrent_flows(out: str) -> list[str]:
    results = [f.result() for f in my_flow.map(["FIRST", "SECOND"])]
    Path(out).write_text(json.dumps(results))
    return results
'''

STACK = """
[tool.oxeo-flows]
default-stack = "aws"

[tool.oxeo-flows.stacks.aws]
runner = "process"
work-pool = "{pool}"

[tool.oxeo-flows.stacks.aws.aws]
region = "eu-west-1"
endpoint-url = "{endpoint}"
vpc = "{vpc}"
subnets = ["{subnet}"]
security-groups = ["{group}"]

[tool.oxeo-flows.stacks.aws.storage]
bucket = "wa-prefect-storage"
folder = "testflow"

[tool.oxeo-flows.stacks.aws.dask]
backend = "ec2"
start-timeout = 120
n-workers = 1

[tool.oxeo-flows.stacks.aws.dask.ec2]
ami = "{ami}"
docker-image = "daskdev/dask:latest"
"""


def test_code_in_s3_a_process_worker_and_an_ec2_dask_cluster(
    prefect_api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ec2_emulator: EC2Emulator,
) -> None:
    from oxeo_flows import deploy_flow
    from oxeo_flows.testing._env import process_env

    emu = ec2_emulator
    s3 = emu.client("s3")
    s3.create_bucket(
        Bucket="wa-prefect-storage",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    ami = emu.client().describe_images()["Images"][0]["ImageId"]
    pool = unique("dev")
    repo = tmp_path / "repo"
    (repo / "flows").mkdir(parents=True)
    (repo / "flows" / "__init__.py").write_text("")
    (repo / "flows" / "testflow.py").write_text(TESTFLOW)
    (repo / "pyproject.toml").write_text(
        STACK.format(
            pool=pool,
            endpoint=emu.endpoint_url,
            vpc=emu.vpc_id,
            subnet=emu.subnet_id,
            group=emu.security_group_id,
            ami=ami,
        )
    )
    monkeypatch.chdir(repo)
    monkeypatch.setenv("AWS_ENDPOINT_URL", emu.endpoint_url)

    result = deploy_flow("flows/testflow.py:concurrent_flows", name="testflow", stack="aws")
    assert result.source == "s3://wa-prefect-storage/testflow"
    assert result.sync is not None
    assert "flows/testflow.py" in result.sync.uploaded
    out = tmp_path / "worker" / "out.json"
    out.parent.mkdir()
    flow_run_id = create_flow_run(result.deployment_id, {"out": str(out)})

    # The worker runs elsewhere: another process, a directory without the code.
    env = process_env(
        {
            "PREFECT_API_URL": prefect_api,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
    )
    worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--run-once"],
        env=env,
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    logs = worker.stdout[-4000:] + worker.stderr[-4000:]
    run = read_flow_run(flow_run_id)
    assert run.state.is_completed(), (run.state, logs)
    assert json.loads(out.read_text()) == ["finished FIRST", "finished SECOND"]
    assert task_run_states(flow_run_id) == ["COMPLETED", "COMPLETED"]

    # The cluster ran on two private instances of the subnet, over TLS, and is gone.
    booted = list(emu.instances.values())
    assert len(booted) == 2
    assert all(i.address.startswith("127.20.1.") for i in booted)
    assert any(
        "distributed.cli.dask_scheduler" in " ".join(i.plan.command) for i in booted if i.plan
    )
    emu.wait_idle()
    assert emu.live_instances() == []
    assert emu.processes() == []
    assert os.path.exists(out)
