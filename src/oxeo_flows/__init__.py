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
    from oxeo_flows.dask_runner import dask_runner
    from oxeo_flows.errors import (
        ApplyError,
        BlockError,
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
    from oxeo_flows.network import AwsNetwork, GcpNetwork
    from oxeo_flows.stack import Stack, load_stack

# Public name -> module that defines it. Keep one name per line, sorted within each group.
_LAZY: dict[str, str] = {
    # errors
    "ApplyError": "oxeo_flows.errors",
    "BlockError": "oxeo_flows.errors",
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
    # dask
    "dask_runner": "oxeo_flows.dask_runner",
    # --- capabilities: add one line per public name below ---
}

__all__ = [
    "ApplyError",
    "AwsNetwork",
    "BlockError",
    "ClusterError",
    "ClusterStartTimeout",
    "ConfigError",
    "DeployError",
    "GcpNetwork",
    "MissingExtraError",
    "OxeoFlowsError",
    "PoolError",
    "SecretAccessError",
    "SecretError",
    "SecretIntegrityError",
    "SecretNotFoundError",
    "Stack",
    "StorageError",
    "SyncError",
    "__version__",
    "dask_runner",
    "load_stack",
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
