"""deploy_flow end to end: moto S3 + the real Prefect server + a real `prefect worker` process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from oxeo_flows.deploy import deploy_flow
from oxeo_flows.errors import StorageError
from oxeo_flows.stack import load_stack
from tests.deploy._worker import run_with_worker
from tests.storage._s3util import Calls, make_bucket, remote_keys, s3_client, write_tree

FLOW = '''\
from pathlib import Path

from prefect import flow

from lib.message import MESSAGE


@flow(name="e2e-hello")
def hello(out: str, name: str = "world") -> str:
    """Say hello into a file."""
    text = f"{MESSAGE} {name}"
    Path(out).write_text(text, encoding="utf-8")
    return text
'''


def stack_toml(moto: str, *, bucket: str = "oxeo-code") -> str:
    return f"""
[tool.oxeo-flows]
default-stack = "aws"

[tool.oxeo-flows.stacks.aws]
runner = "process"
work-pool = "e2e-process"

[tool.oxeo-flows.stacks.aws.aws]
region = "eu-west-1"
endpoint-url = "{moto}"

[tool.oxeo-flows.stacks.aws.storage]
bucket = "{bucket}"
folder = "e2e/hello"
"""


@pytest.fixture
def project(tmp_path: Path, moto: str) -> Path:
    root = write_tree(
        tmp_path / "repo",
        {
            "flows/__init__.py": "",
            "flows/hello.py": FLOW,
            "lib/__init__.py": "",
            "lib/message.py": 'MESSAGE = "hello"\n',
            ".gitignore": "*.log\n",
            "debug.log": "not shipped",
            "pyproject.toml": stack_toml(moto),
        },
    )
    os.chdir(root)
    return root


def run_once_with_worker(deployment: str, out: Path, pool: str) -> Any:
    env = dict(os.environ)
    # The worker must get the project's code from S3, not from this checkout; it does run
    # this checkout's oxeo-flows (its pull step reads the layout this checkout's sync writes).
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    return run_with_worker(deployment, out, pool, env=env)


@pytest.mark.timeout(400)
def test_deploy_to_process_pool_runs_code_pulled_from_s3(
    project: Path, prefect_api: str, moto: str, tmp_path: Path
) -> None:
    client = s3_client()
    make_bucket(client)
    stack = load_stack()

    first = deploy_flow("flows/hello.py:hello", name="s3", stack=stack)
    assert first.action == "created"
    assert first.sync is not None
    assert sorted(first.sync.uploaded) == [
        ".gitignore",
        "flows/__init__.py",
        "flows/hello.py",
        "lib/__init__.py",
        "lib/message.py",
        "pyproject.toml",
    ]
    assert first.storage_block is not None
    assert first.storage_block.action == "created"
    assert first.pool is not None
    assert first.pool.action == "created"
    assert first.source == "s3://oxeo-code/e2e/hello"
    assert "debug.log" not in " ".join(remote_keys(client, "oxeo-code"))

    # The worker runs somewhere else: a directory with no copy of the code.
    workdir = tmp_path / "worker"
    workdir.mkdir()
    run_once_with_worker("e2e-hello/s3", workdir / "out.txt", "e2e-process")
    assert (workdir / "out.txt").read_text(encoding="utf-8") == "hello world"

    # Re-deploying unchanged code uploads nothing and writes nothing.
    again = deploy_flow("flows/hello.py:hello", name="s3", stack=stack)
    assert again.action == "unchanged", again.changes
    assert again.sync is not None
    assert again.sync.uploaded == ()
    assert again.sync.requests.get("PutObject", 0) == 0
    assert again.storage_block is not None
    assert again.storage_block.action == "unchanged"
    assert again.pool is not None
    assert again.pool.action == "unchanged"
    assert again.deployment_id == first.deployment_id

    # A changed file is picked up by the next run.
    (project / "lib/message.py").write_text('MESSAGE = "bonjour"\n', encoding="utf-8")
    third = deploy_flow("flows/hello.py:hello", name="s3", stack=stack)
    assert third.sync is not None
    assert third.sync.uploaded == ("lib/message.py",)
    assert third.action == "updated"
    assert set(third.changes) == {"version"}
    run_once_with_worker("e2e-hello/s3", workdir / "out2.txt", "e2e-process")
    assert (workdir / "out2.txt").read_text(encoding="utf-8") == "bonjour world"


def test_failed_sync_leaves_no_deployment(project: Path, prefect_api: str, moto: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    # The bucket does not exist: the sync fails before anything is registered.
    stack = load_stack(overrides={"storage": {"bucket": "missing-bucket"}})
    with pytest.raises(StorageError, match="does not exist"):
        deploy_flow("flows/hello.py:hello", name="never", stack=stack)
    with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
        client.read_deployment_by_name("e2e-hello/never")


def test_dry_run_writes_nothing(project: Path, prefect_api: str, moto: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    client = s3_client()
    make_bucket(client)
    calls = Calls(client)
    result = deploy_flow(
        "flows/hello.py:hello",
        name="dry",
        stack=load_stack(overrides={"work_pool": "e2e-dry-pool"}),
        dry_run=True,
    )
    assert result.dry_run
    assert result.action == "created"
    assert result.sync is not None
    assert len(result.sync.uploaded) == 6
    assert remote_keys(client, "oxeo-code") == []
    assert calls.ops["PutObject"] == 0
    with get_client(sync_client=True) as api:
        with pytest.raises(ObjectNotFound):
            api.read_deployment_by_name("e2e-hello/dry")
        with pytest.raises(ObjectNotFound):
            api.read_work_pool("e2e-dry-pool")
    assert "[dry run]" in result.summary()


def test_local_stack_deploys_from_the_local_directory(tmp_path: Path, prefect_api: str) -> None:
    from prefect.client.orchestration import get_client

    root = write_tree(
        tmp_path / "local",
        {"flows/hello.py": FLOW, "lib/__init__.py": "", "lib/message.py": 'MESSAGE = "hi"\n'},
    )
    os.chdir(root)
    result = deploy_flow(
        "flows/hello.py:hello",
        name="local",
        parameters={"name": "there"},
        schedule="0 6 * * *",
        tags=["b", "a"],
    )
    assert result.sync is None
    assert result.source == str(root)
    assert result.work_pool == "local-process"
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("e2e-hello/local")
    assert dep.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(root)}}
    ]
    assert dep.parameters == {"name": "there"}
    assert dep.schedules[0].schedule.cron == "0 6 * * *"
    assert "out" in dep.parameter_openapi_schema["properties"]
    again = deploy_flow(
        "flows/hello.py:hello",
        name="local",
        parameters={"name": "there"},
        schedule="0 6 * * *",
        tags=["a", "b"],
    )
    assert again.action == "unchanged", again.changes
    changed = deploy_flow(
        "flows/hello.py:hello", name="local", parameters={"name": "you"}, schedule="0 7 * * *"
    )
    assert changed.action == "updated"
    assert set(changed.changes) == {"parameters", "schedules", "tags"}


VERTEX_STACK = """
[tool.oxeo-flows.stacks.gcp]
runner = "vertex"

[tool.oxeo-flows.stacks.gcp.gcp]
project = "oxeo-main"
region = "europe-west4"

[tool.oxeo-flows.stacks.gcp.vertex]
image = "europe-west4-docker.pkg.dev/oxeo-main/flows/pipelines:1.0"
machine-type = "n1-highmem-8"
service-account = "prefect@oxeo-main.iam.gserviceaccount.com"
work-pool = "e2e-vertex"
private-network = false
"""


def test_vertex_runner_uses_vertex_job_and_pool(
    tmp_path: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    from oxeo_flows.errors import DeployError

    root = write_tree(
        tmp_path / "v",
        {
            "flows/hello.py": FLOW,
            "lib/__init__.py": "",
            "lib/message.py": 'MESSAGE = "hi"\n',
            "pyproject.toml": VERTEX_STACK,
        },
    )
    os.chdir(root)

    # A Vertex job cannot see this directory: without code storage, nothing is written.
    with pytest.raises(DeployError, match=r"cannot see .* storage.image-code-dir"):
        deploy_flow("flows/hello.py:hello", name="vx", stack="gcp")
    with get_client(sync_client=True) as client:
        assert not [p for p in client.read_work_pools() if p.name == "e2e-vertex"]

    monkeypatch.setenv("OXEO_FLOWS_STORAGE__IMAGE_CODE_DIR", "/opt/prefect/flows")

    def deploy(**kw: Any) -> Any:
        # This stack opts out of VPC peering, and oxeo-flows says so.
        with pytest.warns(UserWarning, match="private-network is false"):
            return deploy_flow("flows/hello.py:hello", name="vx", stack="gcp", **kw)

    dry = deploy(dry_run=True)
    result = deploy()
    again = deploy()
    assert dry.runner == "vertex"
    assert dry.work_pool == "e2e-vertex"
    assert dry.source == "image:/opt/prefect/flows"
    # The pool holds the stack's job settings; the deployment only carries its stack.
    assert dry.job_variables == {"env": {"OXEO_FLOWS_STACK": "gcp"}}
    assert dry.pool is not None
    assert dry.pool.type == "vertex-ai"
    assert result.action == "created"
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("e2e-hello/vx")
        pool = client.read_work_pool("e2e-vertex")
    assert dep.work_pool_name == "e2e-vertex"
    assert dep.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/prefect/flows"}}
    ]
    props = pool.base_job_template["variables"]["properties"]
    assert props["image"]["default"].endswith("/pipelines:1.0")
    assert props["machine_type"]["default"] == "n1-highmem-8"
    assert props["env"]["default"]["OXEO_FLOWS_STACK"] == "gcp"
    assert pool.type == "vertex-ai"
    assert again.action == "unchanged", again.changes
