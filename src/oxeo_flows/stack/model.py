"""`Stack`: a resolved, validated stack, and the layering of its pool sections."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import PrivateAttr, model_validator

from oxeo_flows._model import Model, build, kebab
from oxeo_flows.errors import ConfigError
from oxeo_flows.network import (
    AwsNetwork,
    GcpNetwork,
)
from oxeo_flows.stack.dask_sections import DaskSection
from oxeo_flows.stack.sections import (
    AwsSection,
    DockerSection,
    GcpSection,
    PoolSection,
    SecretsSection,
    StorageSection,
    VertexSection,
)

#: Keys of a ``[pools.<name>]`` section that belong to the pool, not to its job.
_POOL_ONLY = frozenset({"type", "description", "concurrency_limit", "adopt"})
#: Tables merged key by key when a pool section layers over its kind's section.
_MERGED_TABLES = frozenset({"env", "labels"})
#: Pool type -> the stack section it layers over.
_LAYERED_ON = {"vertex-ai": "vertex", "docker": "docker"}
#: The values of ``pools.<name>.type``.
_POOL_TYPES = ("vertex-ai", "docker", "process")


class Stack(Model):
    """A resolved, validated stack. Get one with `load_stack`.

    Attributes:
        name: The stack's name.
        runner: Where flow runs go when deployed: ``process``, ``docker`` or ``vertex``.
        work_pool: Default work pool for deployments (defaults to ``<stack>-<runner>``).
        gcp: Google Cloud project and network.
        aws: AWS account, region and VPC.
        vertex: Vertex AI job defaults.
        dask: Where tasks run.
        storage: Code storage for deployments.
        docker: Docker job defaults.
        secrets: Secret sources, cache and required secrets.
        pools: Work pools that ``oxeo-flows apply`` manages.
        variables: Prefect variables that ``oxeo-flows apply`` manages.
    """

    name: str
    extends: str | None = None
    """Another stack this one inherits from, key by key."""
    runner: Literal["process", "docker", "vertex"] = "process"
    """Where flow runs go when deployed: `process`, `docker` or `vertex`."""
    work_pool: str | None = None
    """Default work pool of deployments (default: `<stack>-<runner>`)."""
    gcp: GcpSection = GcpSection()
    aws: AwsSection = AwsSection()
    vertex: VertexSection = VertexSection()
    dask: DaskSection = DaskSection()
    storage: StorageSection = StorageSection()
    docker: DockerSection = DockerSection()
    secrets: SecretsSection = SecretsSection()
    pools: dict[str, PoolSection] = {}
    variables: dict[str, Any] = {}

    _origins: dict[tuple[str, ...], str] = PrivateAttr(default_factory=dict)
    _file: Path | None = PrivateAttr(default=None)

    @property
    def file(self) -> Path | None:
        """The configuration file the stack was read from, if any."""
        return self._file

    def origin(self, *path: str) -> str:
        """Where the value at ``path`` came from.

        Args:
            *path: Field names, e.g. ``origin("gcp", "region")``.

        Returns:
            ``"argument"``, ``"env OXEO_FLOWS_..."``, ``"<file>"`` or ``"default"``.
        """
        key = tuple(path)
        while key:
            if key in self._origins:
                return self._origins[key]
            key = key[:-1]
        return "default"

    def describe(self, *path: str) -> str:
        """A human label for a key, e.g. ``"gcp.region of stack 'prod' (from pyproject.toml)"``."""
        dotted = ".".join(kebab(p) for p in path)
        return f"{dotted} of stack {self.name!r} (from {self.origin(*path)})"

    def gcp_network(self) -> GcpNetwork | None:
        """The stack's GCP network, or None when ``gcp.network`` is not set."""
        return self.gcp.network_spec()

    def aws_network(self) -> AwsNetwork | None:
        """The stack's AWS network, or None when ``aws.region`` is not set."""
        return self.aws.network_spec()

    def pool_settings(self, name: str) -> Model:
        """The job settings of ``[pools.<name>]`` layered over its kind's section.

        The layering rule: a ``vertex-ai`` pool starts from ``[vertex]``, a ``docker`` pool from
        ``[docker]``; every key the pool sets replaces that key, except ``env`` and ``labels``,
        which merge key by key (the pool's entries win). ``description``,
        ``concurrency-limit`` and ``adopt`` belong to the pool alone.

        Args:
            name: A declared pool of type ``vertex-ai`` or ``docker``.

        Returns:
            A `VertexSection` or `DockerSection` with the layered values.

        Raises:
            ConfigError: The layered values are invalid (the message names the pool).
        """
        section = self.pools[name]
        base: Model = getattr(self, _LAYERED_ON[section.type])
        data = base.model_dump(exclude_unset=True)
        for key in section.model_fields_set - _POOL_ONLY:
            value = getattr(section, key)
            if key in _MERGED_TABLES and isinstance(value, dict):
                data[key] = {**data.get(key, {}), **value}
            else:
                data[key] = value
        where = f"pools.{name} of stack {self.name!r} (layered over [{_LAYERED_ON[section.type]}])"
        return build(type(base), data, where=where, prefix=f"pools.{name}.")

    @model_validator(mode="before")
    @classmethod
    def _pool_types(cls, data: Any) -> Any:
        """Name a missing or misspelt ``pools.<name>.type`` with the valid types."""
        pools = data.get("pools") if isinstance(data, dict) else None
        if not isinstance(pools, dict):
            return data
        for name, section in pools.items():
            if not isinstance(section, dict):
                continue
            kind = section.get("type")
            if kind in _POOL_TYPES:
                continue
            valid = ", ".join(repr(t) for t in _POOL_TYPES)
            if kind is None:
                msg = f"pools.{name}.type is required: set type = one of {valid}"
            else:
                close = difflib.get_close_matches(str(kind), _POOL_TYPES, n=1, cutoff=0.5)
                hint = f"did you mean {close[0]!r}? " if close else ""
                msg = f"pools.{name}.type {kind!r} is not a pool type; {hint}use one of {valid}"
            raise ValueError(msg)
        return data

    @model_validator(mode="after")
    def _layered_pools(self) -> Stack:
        for name, section in self.pools.items():
            if section.type in _LAYERED_ON:
                try:
                    self.pool_settings(name)
                except ConfigError as exc:
                    lines = str(exc).splitlines()[1:]
                    reasons = "; ".join(line.strip().removeprefix("- ") for line in lines)
                    layered = _LAYERED_ON[section.type]
                    msg = f"{reasons} (pools.{name}, layered over [{layered}])"
                    raise ValueError(msg) from None
        return self

    @model_validator(mode="after")
    def _dask_in_vertex(self) -> Stack:
        if self.dask.backend == "vertex" and self.runner != "vertex":
            msg = (
                "dask.backend is 'vertex' (Dask workers inside the flow run's Vertex AI job) but "
                f"runner is {self.runner!r}: set runner = 'vertex', or choose another backend"
            )
            raise ValueError(msg)
        return self

    @property
    def default_work_pool(self) -> str:
        """The pool deployments go to when none is given."""
        return self.work_pool or f"{self.name}-{self.runner}"
