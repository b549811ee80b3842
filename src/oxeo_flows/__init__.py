"""oxeo-flows: reusable, private-by-default infrastructure components for Prefect 3 pipelines.

Declare your infrastructure once as a *stack* (``[tool.oxeo-flows]`` in ``pyproject.toml``), then
build flows from small factories that return plain Prefect and Dask objects::

    from prefect import flow
    from oxeo_flows import dask_runner, load_secret

    @flow(task_runner=dask_runner())
    def extract(tiles: list[str]) -> None:
        token = load_secret("sat-extractor-sa")
        ...

Importing this package is cheap: it imports no cloud SDK and no Prefect integration. Each public
name is loaded on first use from the module that defines it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from oxeo_flows.apply import ApplyPlan, apply_stack
    from oxeo_flows.aws import aws_credentials
    from oxeo_flows.blocks import BlockResult, ensure_block
    from oxeo_flows.deploy import DeployResult, deploy_flow
    from oxeo_flows.docker_pool import DockerJob
    from oxeo_flows.doctor import DoctorReport, run_doctor
    from oxeo_flows.errors import (
        ApplyError,
        BlockError,
        BlockNotFoundError,
        ClusterError,
        ClusterStartTimeout,
        ConfigError,
        DeployError,
        MissingExtraError,
        OxeoFlowsError,
        PoolError,
        SecretAccessError,
        SecretError,
        SecretIntegrityError,
        SecretNotFoundError,
        StorageError,
        SyncError,
    )
    from oxeo_flows.fanout import map_in_chunks
    from oxeo_flows.network import AwsNetwork, GcpNetwork
    from oxeo_flows.pools import PoolResult, ensure_pool
    from oxeo_flows.pools.kind_docker import (
        docker_job,
        docker_registry_credentials,
        ensure_docker_pool,
    )
    from oxeo_flows.pools.kind_vertex import ensure_vertex_pool, vertex_job
    from oxeo_flows.runners import dask_runner
    from oxeo_flows.secrets import (
        aload_secret,
        clear_secret_cache,
        gcp_credentials_from_secret,
        git_ssh_env,
        google_credentials_from_secret,
        load_secret,
        ssh_key_file,
    )
    from oxeo_flows.stack import Stack, load_stack, resolve_stack
    from oxeo_flows.storage import SyncReport, s3_bucket, sync_code
    from oxeo_flows.vertex import VertexJob

# Public name -> module that defines it. Keep one name per line, sorted within each group.
_LAZY: dict[str, str] = {
    # errors
    "ApplyError": "oxeo_flows.errors",
    "BlockError": "oxeo_flows.errors",
    "BlockNotFoundError": "oxeo_flows.errors",
    "ClusterError": "oxeo_flows.errors",
    "ClusterStartTimeout": "oxeo_flows.errors",
    "ConfigError": "oxeo_flows.errors",
    "DeployError": "oxeo_flows.errors",
    "MissingExtraError": "oxeo_flows.errors",
    "OxeoFlowsError": "oxeo_flows.errors",
    "PoolError": "oxeo_flows.errors",
    "SecretAccessError": "oxeo_flows.errors",
    "SecretError": "oxeo_flows.errors",
    "SecretIntegrityError": "oxeo_flows.errors",
    "SecretNotFoundError": "oxeo_flows.errors",
    "StorageError": "oxeo_flows.errors",
    "SyncError": "oxeo_flows.errors",
    # stack and networks
    "AwsNetwork": "oxeo_flows.network",
    "GcpNetwork": "oxeo_flows.network",
    "Stack": "oxeo_flows.stack",
    "load_stack": "oxeo_flows.stack",
    "resolve_stack": "oxeo_flows.stack",
    # dask
    "dask_runner": "oxeo_flows.runners",
    "map_in_chunks": "oxeo_flows.fanout",
    # --- capabilities: add one line per public name below ---
    "PoolResult": "oxeo_flows.pools",
    "ensure_pool": "oxeo_flows.pools",
    "VertexJob": "oxeo_flows.vertex",
    "ensure_vertex_pool": "oxeo_flows.pools.kind_vertex",
    "vertex_job": "oxeo_flows.pools.kind_vertex",
    "BlockResult": "oxeo_flows.blocks",
    "ensure_block": "oxeo_flows.blocks",
    "DeployResult": "oxeo_flows.deploy",
    "deploy_flow": "oxeo_flows.deploy",
    "DockerJob": "oxeo_flows.docker_pool",
    "docker_job": "oxeo_flows.pools.kind_docker",
    "docker_registry_credentials": "oxeo_flows.pools.kind_docker",
    "ensure_docker_pool": "oxeo_flows.pools.kind_docker",
    "SyncReport": "oxeo_flows.storage",
    "s3_bucket": "oxeo_flows.storage",
    "sync_code": "oxeo_flows.storage",
    "aws_credentials": "oxeo_flows.aws",
    "aload_secret": "oxeo_flows.secrets",
    "clear_secret_cache": "oxeo_flows.secrets",
    "gcp_credentials_from_secret": "oxeo_flows.secrets",
    "git_ssh_env": "oxeo_flows.secrets",
    "google_credentials_from_secret": "oxeo_flows.secrets",
    "load_secret": "oxeo_flows.secrets",
    "ssh_key_file": "oxeo_flows.secrets",
    "ApplyPlan": "oxeo_flows.apply",
    "apply_stack": "oxeo_flows.apply",
    "DoctorReport": "oxeo_flows.doctor",
    "run_doctor": "oxeo_flows.doctor",
}

__all__ = [
    "ApplyError",
    "ApplyPlan",
    "AwsNetwork",
    "BlockError",
    "BlockNotFoundError",
    "BlockResult",
    "ClusterError",
    "ClusterStartTimeout",
    "ConfigError",
    "DeployError",
    "DeployResult",
    "DockerJob",
    "DoctorReport",
    "GcpNetwork",
    "MissingExtraError",
    "OxeoFlowsError",
    "PoolError",
    "PoolResult",
    "SecretAccessError",
    "SecretError",
    "SecretIntegrityError",
    "SecretNotFoundError",
    "Stack",
    "StorageError",
    "SyncError",
    "SyncReport",
    "VertexJob",
    "__version__",
    "aload_secret",
    "apply_stack",
    "aws_credentials",
    "clear_secret_cache",
    "dask_runner",
    "deploy_flow",
    "docker_job",
    "docker_registry_credentials",
    "ensure_block",
    "ensure_docker_pool",
    "ensure_pool",
    "ensure_vertex_pool",
    "gcp_credentials_from_secret",
    "git_ssh_env",
    "google_credentials_from_secret",
    "load_secret",
    "load_stack",
    "map_in_chunks",
    "resolve_stack",
    "run_doctor",
    "s3_bucket",
    "ssh_key_file",
    "sync_code",
    "vertex_job",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        value: Any = version("oxeo-flows")
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        msg = f"module 'oxeo_flows' has no attribute {name!r}"
        raise AttributeError(msg)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
