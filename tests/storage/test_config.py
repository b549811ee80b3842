"""Factories (aws_credentials, s3_bucket, docker_job), ensure_block, and bad input → ConfigError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oxeo_flows import DockerJob, docker_job
from oxeo_flows.aws import aws_credentials
from oxeo_flows.blocks import ensure_block
from oxeo_flows.deploy import deploy_flow
from oxeo_flows.errors import ConfigError
from oxeo_flows.stack import load_stack
from oxeo_flows.storage import s3_bucket, sync_code

STACK = """
[tool.oxeo-flows.stacks.aws.aws]
region = "eu-west-1"
profile = "oxeo-dev"
endpoint-url = "http://127.0.0.1:9"
assume-role-arn = "arn:aws:iam::123456789012:role/prefect-code"

[tool.oxeo-flows.stacks.aws.storage]
bucket = "oxeo-flow-code"
folder = "pipelines/"
"""


def test_aws_credentials_from_stack_store_no_keys(stack_file: Any) -> None:
    stack_file(STACK)
    creds = aws_credentials(stack=load_stack("aws"))
    assert creds.region_name == "eu-west-1"
    assert creds.profile_name == "oxeo-dev"
    assert creds.assume_role_arn == "arn:aws:iam::123456789012:role/prefect-code"
    assert creds.aws_client_parameters.endpoint_url == "http://127.0.0.1:9"
    assert creds.aws_access_key_id is None
    assert creds.aws_secret_access_key is None
    override = aws_credentials(stack=load_stack("aws"), region_name="us-east-1")
    assert override.region_name == "us-east-1"


def test_s3_bucket_from_stack(stack_file: Any) -> None:
    stack_file(STACK)
    block = s3_bucket(stack=load_stack("aws"))
    assert block.bucket_name == "oxeo-flow-code"
    assert block.bucket_folder == "pipelines"
    assert block.credentials.profile_name == "oxeo-dev"
    assert s3_bucket("other-bucket", "x/y", stack=load_stack("aws")).bucket_folder == "x/y"


def test_ensure_block_created_unchanged_updated(stack_file: Any, prefect_api: str) -> None:
    from prefect_aws import S3Bucket

    stack_file(STACK)
    stack = load_stack("aws")
    first = ensure_block(s3_bucket(stack=stack), "cfg-code")
    assert first.action == "created"
    assert first.slug == "s3-bucket/cfg-code"
    before = S3Bucket.load("cfg-code")
    same = ensure_block(s3_bucket(stack=stack), "cfg-code")
    assert same.action == "unchanged"
    assert same.changes == {}
    # No write happened: the stored document is byte-for-byte the one from before.
    assert S3Bucket.load("cfg-code")._block_document_id == before._block_document_id

    dry = ensure_block(s3_bucket(folder="v2", stack=stack), "cfg-code", dry_run=True)
    assert dry.action == "updated"
    assert S3Bucket.load("cfg-code").bucket_folder == "pipelines"

    moved = ensure_block(s3_bucket(folder="v2", stack=stack), "cfg-code")
    assert moved.action == "updated"
    assert moved.changes == {"bucket_folder": ("pipelines", "v2")}
    assert S3Bucket.load("cfg-code").bucket_folder == "v2"


def test_ensure_block_masks_secrets_in_changes(prefect_api: str) -> None:
    from prefect.blocks.system import Secret

    ensure_block(Secret(value="first-value"), "cfg-secret")
    result = ensure_block(Secret(value="second-value"), "cfg-secret")
    assert result.action == "updated"
    assert "first-value" not in repr(result.changes)
    assert "second-value" not in repr(result.changes)
    assert ensure_block(Secret(value="second-value"), "cfg-secret").action == "unchanged"


def _sync(**kw: Any) -> Callable[[], Any]:
    return lambda: sync_code(".", stack=load_stack(), dry_run=True, **kw)


BAD: list[tuple[str, Callable[[], Any], str]] = [
    ("bucket too short", _sync(bucket="ab"), "3 to 63"),
    ("bucket uppercase", _sync(bucket="Oxeo-Code"), "lowercase"),
    ("bucket underscore", _sync(bucket="oxeo_code"), "lowercase"),
    ("bucket with s3://", _sync(bucket="s3://oxeo-code"), "without 's3://'"),
    ("bucket with path", _sync(bucket="oxeo-code/app"), "'/'"),
    ("bucket double dot", _sync(bucket="oxeo..code"), "'..'"),
    ("bucket IP address", _sync(bucket="192.168.1.10"), "IP address"),
    ("bucket reserved suffix", _sync(bucket="oxeo-s3alias"), "reserves"),
    ("bucket too long", _sync(bucket="a" * 64), "3 to 63"),
    ("folder with ..", _sync(bucket="oxeo-code", folder="app/../other"), "'..'"),
    ("folder absolute", _sync(bucket="oxeo-code", folder="/app"), "relative"),
    ("folder empty part", _sync(bucket="oxeo-code", folder="a//b"), "empty parts"),
    ("folder backslash", _sync(bucket="oxeo-code", folder="a\\b"), "separator"),
    ("missing bucket", _sync(), "No S3 bucket"),
    ("multipart threshold", _sync(bucket="oxeo-code", multipart_threshold=1024), "5 MiB"),
    ("image uppercase repo", lambda: DockerJob(image="Prefect/Prefect:3"), "image"),
    ("image empty tag", lambda: DockerJob(image="prefecthq/prefect:"), "image"),
    ("image with space", lambda: DockerJob(image="prefect hq"), "image"),
    ("volume no target", lambda: DockerJob(volumes=("/srv/data",)), "SOURCE:/container"),
    ("volume relative target", lambda: DockerJob(volumes=("/a:data",)), "absolute"),
    ("volume bad mode", lambda: DockerJob(volumes=("/a:/b:rx",)), "mode"),
    ("pip spec invalid", lambda: DockerJob(extra_pip_packages=("s3fs>>1",)), "requirement"),
    ("pip spec with space", lambda: DockerJob(extra_pip_packages=("s3fs >=1",)), "spaces"),
    ("mem limit", lambda: DockerJob(mem_limit="4 GB"), "memory limit"),
    ("pull policy", lambda: DockerJob(image_pull_policy="Sometimes"), "image-pull-policy"),
    (
        "networks and network mode",
        lambda: DockerJob(networks=("a",), network_mode="host"),
        "exclusive",
    ),
    (
        "pip twice",
        lambda: DockerJob(extra_pip_packages=("s3fs",), env={"EXTRA_PIP_PACKAGES": "x"}),
        "either",
    ),
    ("env name", lambda: DockerJob(env={"BAD-NAME": "x"}), "environment variable"),
    ("unknown docker field", lambda: docker_job(imagee="python:3.11"), "did you mean 'image'"),
    ("registry block name", lambda: DockerJob(registry_credentials="My Registry"), "block"),
    ("aws unknown override", lambda: aws_credentials(regoin="x"), "unknown argument"),
    ("aws endpoint not a URL", lambda: aws_credentials(endpoint_url="localhost:9000"), "URL"),
    ("aws role not an ARN", lambda: aws_credentials(assume_role_arn="prefect-role"), "ARN"),
    ("block name", lambda: ensure_block(s3_bucket("oxeo-code"), "Oxeo Code"), "block name"),
    ("deploy entrypoint", lambda: deploy_flow("flows/hello.py", name="x"), "entrypoint"),
    ("deploy missing file", lambda: deploy_flow("nope.py:f", name="x"), "does not exist"),
    ("deploy bad name", lambda: deploy_flow("f.py:f", name="a/b"), "deployment name"),
]


@pytest.mark.parametrize(("case", "call", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_config_error(
    case: str, call: Callable[[], Any], match: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert str(info.value).strip()


def test_stack_bucket_error_names_its_origin(stack_file: Any) -> None:
    stack_file('[tool.oxeo-flows.stacks.bad.storage]\nbucket = "Bad_Bucket"\n')
    with pytest.raises(
        ConfigError, match=r"storage.bucket: S3 bucket name 'Bad_Bucket'.*pyproject"
    ):
        load_stack("bad")


def test_stack_docker_section_is_validated(stack_file: Any) -> None:
    stack_file('[tool.oxeo-flows.stacks.bad.docker]\nvolumes = ["/srv/data"]\n')
    with pytest.raises(ConfigError, match=r"volume '/srv/data'.*pyproject"):
        load_stack("bad")
