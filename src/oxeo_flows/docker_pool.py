"""Flow runs as Docker containers: the `DockerJob` spec (pure: no I/O, no Docker SDK).

Prefect 3 has no ``DockerContainer`` infrastructure block: containers are started by a
``docker`` work pool's worker (``prefect worker start --type docker``) from the pool's job
variables. `DockerJob` validates those variables and renders exactly the names the ``docker``
pool type declares. Building one from a stack (`docker_job`) and ensuring the pool
(`ensure_docker_pool`) live with the ``docker`` pool kind in `oxeo_flows.pools`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from oxeo_flows._checks import (
    ImageRef,
    PipRequirement,
    VolumeSpec,
)
from oxeo_flows._model import Model, format_validation_error
from oxeo_flows.errors import ConfigError

__all__ = ["REGISTRY_BLOCK_TYPE", "DockerFields", "DockerJob"]

#: Block type slug of `prefect_docker.DockerRegistryCredentials`.
REGISTRY_BLOCK_TYPE = "docker-registry-credentials"

_MEM_RE = re.compile(r"^[0-9]+[bkmgBKMG]?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_BLOCK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DockerFields(Model):
    """The settings of a Docker flow-run container, all optional, with their checks.

    The one field set shared by `DockerJob` (the spec) and the stack's ``[docker]`` and
    ``[pools.<name>]`` (``type = "docker"``) sections.
    """

    image: ImageRef | None = None
    """Container image of the flow run; None leaves the worker's default (Prefect's image)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment of the container; never secret values."""
    extra_pip_packages: tuple[PipRequirement, ...] = ()
    """Packages installed at container start (`EXTRA_PIP_PACKAGES`)."""
    networks: tuple[str, ...] = ()
    """Docker networks to attach (exclusive with `network-mode`)."""
    network_mode: str | None = None
    """Docker network mode: `bridge`, `host`, `none`, `container:NAME` or a network name."""
    volumes: tuple[VolumeSpec, ...] = ()
    """Volume mounts, `SOURCE:TARGET[:ro|rw]`."""
    mem_limit: str | None = None
    """Memory limit, e.g. `4g`."""
    image_pull_policy: Literal["IfNotPresent", "Always", "IfPossible", "Never"] | None = None
    """When to pull the image."""
    auto_remove: bool = False
    """Remove the container when it exits."""
    privileged: bool = False
    """Run the container privileged (avoid)."""
    stream_output: bool = True
    """Stream the container's output to the worker's log."""

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not _ENV_NAME_RE.match(key):
                msg = f"environment variable name {key!r} is invalid (letters, digits, '_')"
                raise ValueError(msg)
        return v

    @field_validator("networks")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if not _NAME_RE.match(name):
                msg = f"network name {name!r} is invalid"
                raise ValueError(msg)
        return v

    @field_validator("network_mode")
    @classmethod
    def _network_mode(cls, v: str | None) -> str | None:
        if v is None:
            return v
        target = v.removeprefix("container:")
        if not _NAME_RE.match(target):
            msg = f"network mode {v!r} is invalid (bridge, host, none, container:NAME or a network)"
            raise ValueError(msg)
        return v

    @field_validator("mem_limit", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if v is not None and (not isinstance(v, str) or not _MEM_RE.match(v)):
            msg = f"memory limit {v!r} is invalid; use a number with b, k, m or g (e.g. '4g')"
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DockerFields:
        if self.networks and self.network_mode:
            msg = "networks and network_mode are exclusive (Docker refuses both); keep one"
            raise ValueError(msg)
        if self.extra_pip_packages and "EXTRA_PIP_PACKAGES" in self.env:
            msg = "give extra pip packages either as extra_pip_packages or env.EXTRA_PIP_PACKAGES"
            raise ValueError(msg)
        return self


class DockerJob(DockerFields):
    """A validated ``docker`` work-pool job: where and how a flow run's container starts.

    Pure: no I/O, no Docker SDK. `job_variables` renders the variables the ``docker`` pool type
    declares.

    Attributes:
        image: Image reference; None leaves the worker's default (Prefect's image).
        env: Environment variables.
        extra_pip_packages: Packages installed at container start by Prefect's image
            (``EXTRA_PIP_PACKAGES``), e.g. ``["s3fs", "oxeo-flows[aws]"]``.
        networks: Docker networks to attach (exclusive with ``network_mode``).
        network_mode: ``bridge``, ``host``, ``none``, ``container:NAME`` or a network name.
        volumes: ``SOURCE:/container/path[:MODE]`` specs.
        mem_limit: Memory limit such as ``512m`` or ``4g``.
        image_pull_policy: ``IfNotPresent``, ``Always``, ``IfPossible`` or ``Never``.
        auto_remove: Remove the container when it exits.
        privileged: Run privileged (avoid).
        stream_output: Stream container output to the worker's log.
        registry_credentials: Name of a saved ``DockerRegistryCredentials`` block (see
            `docker_registry_credentials`); the pool references it, never a password.
    """

    registry_credentials: str | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(
                format_validation_error(exc, DockerJob, where="DockerJob(...)")
            ) from None

    @field_validator("registry_credentials")
    @classmethod
    def _registry(cls, v: str | None) -> str | None:
        if v is not None:
            name = v.removeprefix(f"{REGISTRY_BLOCK_TYPE}/")
            if not _BLOCK_NAME_RE.match(name):
                msg = (
                    f"registry_credentials must be the name of a saved "
                    f"DockerRegistryCredentials block (lowercase, digits, '-'), got {v!r}"
                )
                raise ValueError(msg)
            return name
        return v

    def job_variables(self, *, registry_block_id: str | None = None) -> dict[str, Any]:
        """Render the ``docker`` work-pool job variables (JSON-ready; unset values omitted).

        Args:
            registry_block_id: Id of the saved registry credentials block. With it, the
                reference is ``{"$ref": {"block_document_id": ...}}``, the form the Prefect API
                validates for pools and deployments (`resolve_job_variables` looks it up).
                Without it, a ``{{ prefect.blocks.docker-registry-credentials.NAME }}``
                template, for prefect.yaml files.

        Returns:
            A dict whose keys are all declared by the ``docker`` pool type's template.
        """
        env = dict(self.env)
        if self.extra_pip_packages:
            env["EXTRA_PIP_PACKAGES"] = " ".join(self.extra_pip_packages)
        out: dict[str, Any] = {
            "env": env,
            "networks": list(self.networks),
            "volumes": list(self.volumes),
            "auto_remove": self.auto_remove,
            "privileged": self.privileged,
            "stream_output": self.stream_output,
        }
        if self.image is not None:
            out["image"] = self.image
        if self.network_mode is not None:
            out["network_mode"] = self.network_mode
        if self.mem_limit is not None:
            out["mem_limit"] = self.mem_limit
        if self.image_pull_policy is not None:
            out["image_pull_policy"] = self.image_pull_policy
        if self.registry_credentials is not None:
            if registry_block_id is not None:
                out["registry_credentials"] = {
                    "$ref": {"block_document_id": str(registry_block_id)}
                }
            else:
                out["registry_credentials"] = (
                    f"{{{{ prefect.blocks.{REGISTRY_BLOCK_TYPE}.{self.registry_credentials} }}}}"
                )
        return out
