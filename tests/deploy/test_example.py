"""The examples/aws_docker_s3 template: its stack loads and renders, offline."""

from __future__ import annotations

from pathlib import Path

from oxeo_flows import docker_job
from oxeo_flows.pools import default_base_job_template
from oxeo_flows.stack import load_stack
from oxeo_flows.storage import code_files, s3_bucket

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aws_docker_s3"


def test_example_aws_stack_loads_and_renders() -> None:
    stack = load_stack("aws", project_dir=EXAMPLE)
    assert stack.runner == "docker"
    assert stack.default_work_pool == "aws-docker"
    job = docker_job(stack=stack)
    variables = job.job_variables()
    declared = set(default_base_job_template("docker")["variables"]["properties"])
    assert set(variables) <= declared
    assert variables["image"] == "prefecthq/prefect:3-python3.11"
    assert variables["env"]["EXTRA_PIP_PACKAGES"] == "oxeo-flows[aws] s3fs"
    assert variables["mem_limit"] == "2g"
    block = s3_bucket(stack=stack)
    assert block.bucket_name == "wa-prefect2-deployments"
    assert block.bucket_folder == "aws-docker-s3"
    assert block.credentials.aws_access_key_id is None  # the instance role, never keys
    assert stack.storage.block_name == "deployment-workflows"


def test_example_local_stack_is_the_default() -> None:
    stack = load_stack(project_dir=EXAMPLE)
    assert stack.name == "local"
    assert stack.storage.bucket is None


def test_example_ships_only_code() -> None:
    files = code_files(EXAMPLE)
    assert "flows/testflow.py" in files
    assert "deploy.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


def test_example_deploys_to_aws_stack_dry_run(prefect_api: str, moto: str) -> None:
    """The whole `deploy.py --stack aws --dry-run` path, with moto standing in for S3."""
    from oxeo_flows.deploy import deploy_flow
    from tests.storage._s3util import make_bucket, remote_keys, s3_client

    client = s3_client()
    make_bucket(client, "wa-prefect2-deployments")
    stack = load_stack("aws", project_dir=EXAMPLE)
    result = deploy_flow(
        "flows/testflow.py:concurrent_flows",
        name="testflow",
        stack=stack,
        src=EXAMPLE,
        dry_run=True,
    )
    assert result.name == "concurrent-flows/testflow"
    assert result.runner == "docker"
    assert result.work_pool == "aws-docker"
    assert result.source == "s3://wa-prefect2-deployments/aws-docker-s3"
    assert result.sync is not None
    assert "flows/testflow.py" in result.sync.uploaded
    assert result.storage_block is not None
    assert result.storage_block.slug == "s3-bucket/deployment-workflows"
    assert result.pool is not None
    assert result.pool.type == "docker"
    assert result.job_variables["env"]["EXTRA_PIP_PACKAGES"] == "oxeo-flows[aws] s3fs"
    assert remote_keys(client, "wa-prefect2-deployments") == []  # a dry run
