"""One field set per concept and one pool mechanism: what the stack accepts, the spec accepts,
and apply, ensure-pool and deploy write the same base job template from one stack."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from oxeo_flows import apply_stack, deploy_flow, docker_job, ensure_docker_pool, ensure_vertex_pool
from oxeo_flows.docker_pool import DockerFields, DockerJob
from oxeo_flows.errors import ConfigError
from oxeo_flows.network import AwsNetwork, AwsNetworkFields, GcpNetwork, GcpNetworkFields
from oxeo_flows.pools.kinds import POOL_KINDS, layered_section, pool_kind, pool_target
from oxeo_flows.stack import (
    AwsSection,
    DockerPoolSection,
    DockerSection,
    GcpSection,
    VertexPoolSection,
    VertexSection,
    load_stack,
)
from oxeo_flows.vertex import VertexFields, VertexJob
from tests.storage._s3util import write_tree

STACK = """
[tool.oxeo-flows]
default-stack = "prod"

[tool.oxeo-flows.stacks.prod]
runner = "vertex"

[tool.oxeo-flows.stacks.prod.gcp]
project = "oxeo-main"
project-number = "123456789012"
region = "europe-west4"
network = "dask"
reserved-ip-ranges = ["vertex-peering"]
service-account = "prefect@oxeo-main.iam.gserviceaccount.com"

[tool.oxeo-flows.stacks.prod.vertex]
image = "europe-docker.pkg.dev/oxeo-main/flows/extract:1"
machine-type = "n1-highmem-8"
api-key-secret = "prefect-api-key"
env = { LOG_LEVEL = "INFO", REGION = "eu" }
labels = { team = "eo" }
max-run-time-hours = 12

[tool.oxeo-flows.stacks.prod.storage]
image-code-dir = "/opt/prefect/flows"

[tool.oxeo-flows.stacks.prod.docker]
image = "ghcr.io/oxeo/flows:1"
env = { LOG_LEVEL = "INFO" }

[tool.oxeo-flows.stacks.prod.pools.gpu]
type = "vertex-ai"
machine-type = "n1-standard-8"
accelerator-type = "NVIDIA_TESLA_T4"
accelerator-count = 1
env = { CUDA = "1" }
description = "GPU flow runs"

[tool.oxeo-flows.stacks.prod.pools.dock]
type = "docker"
mem-limit = "4g"
"""

FLOW = '''
from prefect import flow


@flow(name="kinds")
def kinds() -> str:
    """A flow."""
    return "ok"
'''


# ----------------------------------------------------------------------------- one field set


@pytest.mark.parametrize(
    ("fields", "section", "spec"),
    [
        (VertexFields, VertexSection, VertexJob),
        (VertexFields, VertexPoolSection, VertexJob),
        (DockerFields, DockerSection, DockerJob),
        (DockerFields, DockerPoolSection, DockerJob),
        (GcpNetworkFields, GcpSection, GcpNetwork),
        (AwsNetworkFields, AwsSection, AwsNetwork),
    ],
)
def test_section_and_spec_share_one_field_set(fields: Any, section: Any, spec: Any) -> None:
    assert issubclass(section, fields)
    assert issubclass(spec, fields)
    # The spec may only make fields required (redeclaring them without None).
    assert set(spec.__annotations__) & set(fields.model_fields) <= REQUIRED_IN_SPEC
    for name, info in fields.model_fields.items():
        assert section.model_fields[name].metadata == info.metadata, name
        assert section.model_fields[name].annotation == info.annotation, name
        if name not in spec.__annotations__:
            assert spec.model_fields[name].metadata == info.metadata, name


REQUIRED_IN_SPEC = {"project", "network", "region"}


BAD_VALUES = [
    ("vertex", "boot-disk-type", '"pd-balanced"', "vertex.boot-disk-type", "pd-ssd"),
    ("vertex", "boot-disk-size-gb", "50", "vertex.boot-disk-size-gb", "100"),
    ("vertex", "image", '"UPPER/case"', "vertex.image", "lowercase"),
    ("vertex", "machine-type", '"n1 standard"', "vertex.machine-type", "machine type"),
    ("vertex", "service-account", '"nobody"', "vertex.service-account", "gserviceaccount"),
    ("gcp", "network", '"Bad_Net"', "gcp.network", "network name"),
    ("gcp", "host-project-number", '"123456789012"', "gcp", "host-project"),
    ("gcp", "subnetwork", '"dask-sub"', "gcp", "needs a region"),
    ("docker", "mem-limit", '"lots"', "docker.mem-limit", "'4g'"),
    ("docker", "image", '"Bad Image"', "docker.image", "image reference"),
    ("aws", "subnets", '["subnet-xyz"]', "aws.subnets.0", "subnet id"),
]


@pytest.mark.parametrize(
    ("section", "key", "value", "where", "fix"),
    BAD_VALUES,
    ids=[f"{s}.{k}" for s, k, *_ in BAD_VALUES],
)
def test_a_value_the_spec_refuses_fails_at_load_stack(
    stack_file: Any, section: str, key: str, value: str, where: str, fix: str
) -> None:
    body = f"[tool.oxeo-flows.stacks.bad.{section}]\n{key} = {value}\n"
    path = stack_file(body)
    with pytest.raises(ConfigError) as info:
        load_stack("bad")
    text = str(info.value)
    assert "stack 'bad'" in text
    assert str(path) in text
    assert f"- {where}" in text, text
    assert fix in text, text
    assert "pydantic" not in text


def test_vertex_job_errors_are_ours_for_a_bad_network_object() -> None:
    with pytest.raises(ConfigError, match="network name"):
        VertexJob(
            image="python:3.11",
            region="europe-west4",
            service_account="prefect@oxeo-main.iam.gserviceaccount.com",
            network={"project": "oxeo-main", "network": "Bad_Net"},
        )


def test_every_public_factory_takes_a_stack_name(stack_file: Any) -> None:
    from oxeo_flows import aws_credentials, vertex_job

    stack_file(STACK)
    assert vertex_job(stack="prod").machine_type == "n1-highmem-8"
    assert docker_job(stack="prod").image == "ghcr.io/oxeo/flows:1"
    aws_credentials(stack="prod")
    with pytest.raises(ConfigError, match="stack must be a Stack, a stack name or None"):
        vertex_job(stack=42)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- kinds


def test_the_registry_names_every_kind() -> None:
    assert sorted(POOL_KINDS) == ["docker", "process", "vertex-ai"]
    assert pool_kind("vertex") is pool_kind("vertex-ai")
    assert [k.remote for k in (pool_kind("process"), pool_kind("docker"))] == [False, True]
    with pytest.raises(ConfigError, match="oxeo-flows manages: docker, process, vertex-ai"):
        pool_kind("kubernetes")


def test_a_pool_section_layers_over_its_kind_section(stack_file: Any) -> None:
    stack_file(STACK)
    stack = load_stack()
    assert pool_target(stack) == ("prod-vertex", pool_kind("vertex-ai"))
    assert pool_target(stack, "dock")[1] is pool_kind("docker")
    gpu, path = layered_section(stack, pool_kind("vertex-ai"), "gpu")
    assert path == ("pools", "gpu")
    assert gpu.image == "europe-docker.pkg.dev/oxeo-main/flows/extract:1"  # from [vertex]
    assert gpu.machine_type == "n1-standard-8"  # the pool's own
    assert gpu.env == {"LOG_LEVEL": "INFO", "REGION": "eu", "CUDA": "1"}  # tables merge
    assert gpu.max_run_time_hours == 12
    dock = docker_job(stack=stack, pool="dock")
    assert (dock.image, dock.mem_limit) == ("ghcr.io/oxeo/flows:1", "4g")
    with pytest.raises(ConfigError, match="type 'docker', not 'vertex-ai'"):
        layered_section(stack, pool_kind("vertex-ai"), "dock")


def _templates(*names: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {n: client.read_work_pool(n).base_job_template for n in names}


@pytest.mark.timeout(240)
def test_apply_ensure_pool_and_deploy_write_one_template(tmp_path: Path, prefect_api: str) -> None:
    root = write_tree(tmp_path / "repo", {"flows/kinds.py": FLOW, "pyproject.toml": STACK})
    os.chdir(root)
    plan = apply_stack("prod")
    assert {(i.kind, i.name, i.action) for i in plan.items} == {
        ("pool", "gpu", "create"),
        ("pool", "dock", "create"),
    }
    first = _templates("gpu", "dock")
    gpu = first["gpu"]["variables"]["properties"]
    assert gpu["image"]["default"] == "europe-docker.pkg.dev/oxeo-main/flows/extract:1"
    assert gpu["machine_type"]["default"] == "n1-standard-8"
    assert gpu["accelerator_type"]["default"] == "NVIDIA_TESLA_T4"
    assert gpu["maximum_run_time_hours"]["default"] == 12
    assert gpu["env"]["default"] == {
        "LOG_LEVEL": "INFO",
        "REGION": "eu",
        "CUDA": "1",
        "PREFECT_API_KEY": None,  # the API-key protection is never dropped
        "OXEO_FLOWS_STACK": "prod",
    }
    assert gpu["command"]["default"].startswith("python -m oxeo_flows.vertex_entrypoint")

    # The other writers agree: nothing to change.
    assert ensure_vertex_pool("gpu", stack="prod").action == "unchanged"
    assert ensure_docker_pool("dock", stack="prod").action == "unchanged"
    runner = CliRunner()
    from oxeo_flows.cli import app

    for args in (["vertex", "ensure-pool", "gpu"], ["docker", "ensure-pool", "dock"]):
        out = runner.invoke(app, [*args, "--stack", "prod"])
        assert out.exit_code == 0, out.output
        assert "unchanged" in out.output
    check = runner.invoke(app, ["apply", "--stack", "prod", "--check"])
    assert check.exit_code == 0, check.output
    result = deploy_flow("flows/kinds.py:kinds", name="gpu", stack="prod", work_pool="gpu")
    assert result.pool is not None
    assert result.pool.action == "unchanged"
    assert result.job_variables == {"env": {**gpu["env"]["default"]}}
    assert _templates("gpu", "dock") == first


def test_a_loaded_secret_never_reaches_a_stored_job_field(stack_file: Any) -> None:
    """Labels, command, image tag and env are refused before anything is written."""
    from oxeo_flows import vertex_job
    from oxeo_flows._redact import register_secret_value
    from oxeo_flows.pools.kinds import pool_defaults

    stack_file(STACK)
    token = "ghpzq8xvk2mlw9tnb4ryc7hdj5spf3ga1eu"  # lowercase: a valid label value
    register_secret_value(token)
    stack = load_stack()

    def ids(slug: str, name: str) -> str:
        return "id"

    cases = {
        "labels": {"team": token},
        "command": f"prefect flow-run execute --token {token}",
        "image": f"europe-docker.pkg.dev/oxeo-main/flows/extract:{token}",
    }
    for field, value in cases.items():
        job = vertex_job(stack=stack, **{field: value})
        with pytest.raises(ConfigError, match=rf"work pool 'prod-vertex'.*{field}") as info:
            pool_defaults(stack, "prod-vertex", job=job, block_ids=ids)
        assert token not in str(info.value)
    job = docker_job(stack=stack, pool="dock", env={"TOKEN": token})
    with pytest.raises(ConfigError, match=r"work pool 'dock'.*env"):
        pool_defaults(stack, "dock", job=job, block_ids=ids)
