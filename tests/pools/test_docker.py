"""Docker work pools: our job variables rendered by prefect-docker's own job configuration."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from oxeo_flows import DockerJob, docker_job, docker_registry_credentials, ensure_docker_pool
from oxeo_flows.errors import ConfigError, PoolError
from oxeo_flows.pools import default_base_job_template
from oxeo_flows.stack import load_stack

STACK = """
[tool.oxeo-flows.stacks.aws]
runner = "docker"

[tool.oxeo-flows.stacks.aws.docker]
image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/flows:2024.1"
extra-pip-packages = ["s3fs>=2024.1", "oxeo-flows[aws]"]
env = { LOG_LEVEL = "INFO" }
networks = ["prefect"]
volumes = ["/srv/cache:/cache:ro"]
mem-limit = "4g"
image-pull-policy = "Always"
auto-remove = true
registry-url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
registry-username = "AWS"
registry-credentials-block = "ecr"
work-pool = "aws-docker"
"""


def render(template: dict[str, Any], variables: dict[str, Any]) -> Any:
    """Render job variables exactly as the Docker worker does (needs the Prefect API)."""
    from prefect.client.orchestration import get_client

    async def go() -> Any:
        async with get_client() as client:
            return await render_async(template, variables, client)

    return asyncio.run(go())


def test_job_variables_are_declared_by_the_docker_pool_type() -> None:
    declared = set(default_base_job_template("docker")["variables"]["properties"])
    job = DockerJob(
        image="prefecthq/prefect:3-python3.11",
        env={"A": "1"},
        extra_pip_packages=("s3fs",),
        network_mode="host",
        volumes=("./data:/data",),
        mem_limit="512m",
        image_pull_policy="IfNotPresent",
        auto_remove=True,
        registry_credentials="ghcr",
    )
    variables = job.job_variables()
    assert set(variables) <= declared
    assert variables["env"] == {"A": "1", "EXTRA_PIP_PACKAGES": "s3fs"}


def test_rendered_through_prefect_docker_from_the_pool_template(
    stack_file: Any, prefect_api: str
) -> None:
    stack_file(STACK)
    job = docker_job(stack=load_stack("aws"), registry_credentials=None)
    config = render(default_base_job_template("docker"), job.job_variables())
    assert config.image == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/flows:2024.1"
    assert config.env["EXTRA_PIP_PACKAGES"] == "s3fs>=2024.1 oxeo-flows[aws]"
    assert config.env["LOG_LEVEL"] == "INFO"
    assert config.networks == ["prefect"]
    assert config.network_mode is None
    assert config.volumes == ["/srv/cache:/cache:ro"]
    assert config.mem_limit == "4g"
    assert config.image_pull_policy == "Always"
    assert config.auto_remove is True
    assert config.privileged is False
    assert config.registry_credentials is None


def test_pool_defaults_render_like_deployment_variables(stack_file: Any, prefect_api: str) -> None:
    """The pool stores our variables as defaults; a deployment with none gets the same config."""
    from prefect.client.orchestration import get_client

    stack_file(STACK)
    stack = load_stack("aws")
    job = docker_job(stack=stack, registry_credentials=None)
    result = ensure_docker_pool(job=job, stack=stack)
    assert result.name == "aws-docker"
    assert result.type == "docker"
    assert result.action in {"created", "updated"}
    assert ensure_docker_pool(job=job, stack=stack).action == "unchanged"
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool("aws-docker")
    from_pool = render(pool.base_job_template, {})
    variables = job.job_variables()
    # The pool's job environment also carries the stack its runs resolve.
    variables["env"] = {**variables["env"], "OXEO_FLOWS_STACK": "aws"}
    from_job = render(default_base_job_template("docker"), variables)
    for attr in ("image", "env", "networks", "volumes", "mem_limit", "image_pull_policy"):
        assert getattr(from_pool, attr) == getattr(from_job, attr), attr


def test_registry_credentials_block_reference_resolves(
    stack_file: Any, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    from oxeo_flows.blocks import ensure_block

    stack_file(STACK)
    stack = load_stack("aws")
    monkeypatch.setenv("REGISTRY_PASSWORD", "s3cr3t-token")
    creds = docker_registry_credentials(stack=stack)
    assert creds.password.get_secret_value() == "s3cr3t-token"
    assert creds.username == "AWS"
    assert ensure_block(creds, "ecr").action in {"created", "updated"}
    assert ensure_block(creds, "ecr").action == "unchanged"

    # The pool references the block by id; it never holds the password.
    assert ensure_docker_pool("aws-docker-ecr", stack=stack).action == "created"
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool("aws-docker-ecr")
    assert "s3cr3t" not in str(pool.base_job_template)
    config = render(pool.base_job_template, {})
    assert config.registry_credentials.username == "AWS"
    assert config.registry_credentials.password.get_secret_value() == "s3cr3t-token"
    assert config.image.endswith("/flows:2024.1")

    # The prefect.yaml form (a template) resolves the same block.
    templated = render(default_base_job_template("docker"), docker_job(stack=stack).job_variables())
    assert templated.registry_credentials.username == "AWS"


async def render_async(template: dict[str, Any], variables: dict[str, Any], client: Any) -> Any:
    from prefect_docker.worker import DockerWorkerJobConfiguration

    return await DockerWorkerJobConfiguration.from_template_and_values(
        template, variables, client=client
    )


def test_missing_registry_block_is_a_block_error(stack_file: Any, prefect_api: str) -> None:
    from oxeo_flows.errors import BlockError

    with pytest.raises(BlockError, match="ensure_block"):
        ensure_docker_pool("no-block", DockerJob(image="python:3.11", registry_credentials="nope"))


def test_registry_credentials_need_url_and_user(stack_file: Any) -> None:
    with pytest.raises(ConfigError, match="registry_url and username"):
        docker_registry_credentials(stack=load_stack())


def test_pool_of_another_type_is_refused(prefect_api: str) -> None:
    from oxeo_flows.pools import ensure_pool

    ensure_pool("docker-clash", type="process", defaults={})
    with pytest.raises(PoolError):
        ensure_docker_pool("docker-clash", DockerJob(image="python:3.11"))
