"""Stacks: the infrastructure of a flow repository, declared once.

A *stack* says where flow runs go (``runner``), where tasks go (``dask``), where secrets come
from (``secrets``), and the cloud settings those need (``gcp``, ``aws``, ``vertex``,
``storage``, ``docker``, ``pools``). Every factory in oxeo-flows reads the active stack, so a
flow's code does not change between a laptop (the built-in ``local`` stack) and production.

Resolution order of each value, highest first:

1. explicit arguments (``load_stack(overrides=...)``, or a factory's keyword arguments);
2. environment variables ``OXEO_FLOWS_<SECTION>__<KEY>`` (nested with ``__``, e.g.
   ``OXEO_FLOWS_GCP__REGION``, ``OXEO_FLOWS_DASK__GCP__WORKER_MACHINE_TYPE``); lists and tables
   may be given as JSON, lists also comma-separated;
3. ``[tool.oxeo-flows.stacks.<name>]`` in the nearest ``pyproject.toml`` (searched upward from
   the working directory), or ``[stacks.<name>]`` in an ``oxeo-flows.toml`` beside it (which wins),
   or the file named by ``OXEO_FLOWS_CONFIG``; a stack may ``extends = "<other stack>"``;
4. built-in defaults.

The active stack is: the ``name`` argument > ``OXEO_FLOWS_STACK`` > ``default-stack`` in the
file > ``local``. The ``local`` stack exists even without a file and needs no cloud.
"""

from oxeo_flows.stack.dask_sections import (
    SIZING_TARGETS,
    DaskEc2Section,
    DaskGcpSection,
    DaskSection,
    DaskTlsSection,
    DaskVertexSection,
)
from oxeo_flows.stack.loader import (
    ENV_PREFIX,
    LOCAL,
    RESERVED_ENV,
    find_config_file,
    forget_stacks,
    load_stack,
    resolve_stack,
)
from oxeo_flows.stack.model import Stack
from oxeo_flows.stack.sections import (
    AwsSection,
    DockerPoolSection,
    DockerSection,
    GcpEndpoints,
    GcpSection,
    PoolSection,
    ProcessPoolSection,
    SecretsSection,
    StorageSection,
    VertexPoolSection,
    VertexSection,
)

__all__ = [
    "ENV_PREFIX",
    "LOCAL",
    "RESERVED_ENV",
    "SIZING_TARGETS",
    "AwsSection",
    "DaskEc2Section",
    "DaskGcpSection",
    "DaskSection",
    "DaskTlsSection",
    "DaskVertexSection",
    "DockerPoolSection",
    "DockerSection",
    "GcpEndpoints",
    "GcpSection",
    "PoolSection",
    "ProcessPoolSection",
    "SecretsSection",
    "Stack",
    "StorageSection",
    "VertexPoolSection",
    "VertexSection",
    "find_config_file",
    "forget_stacks",
    "load_stack",
    "resolve_stack",
]
