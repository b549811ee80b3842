"""Flow runs as Docker containers: the `DockerJob` spec and ``docker`` work pools.

Prefect 3 has no ``DockerContainer`` infrastructure block: containers are started by a
``docker`` work pool's worker (``prefect worker start --type docker``) from the pool's job
variables. `DockerJob` validates those variables and renders exactly the names the ``docker``
pool type declares; `ensure_docker_pool` writes them as the pool's defaults, idempotently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from oxeo_flows._checks import (
    ImageRef,
    PipRequirement,
    VolumeSpec,
)
from oxeo_flows._model import Model, build, format_validation_error
from oxeo_flows.errors import ConfigError

if TYPE_CHECKING:
    from prefect_docker import DockerRegistryCredentials

    from oxeo_flows.pools import PoolResult
    from oxeo_flows.stack import Stack

__all__ = [
    "REGISTRY_BLOCK_TYPE",
    "DockerJob",
    "docker_job",
    "docker_registry_credentials",
    "ensure_docker_pool",
    "resolve_job_variables",
]

#: Block type slug of `prefect_docker.DockerRegistryCredentials`.
REGISTRY_BLOCK_TYPE = "docker-registry-credentials"

_MEM_RE = re.compile(r"^[0-9]+[bkmgBKMG]?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_BLOCK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DockerJob(Model):
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

    image: ImageRef | None = None
    env: dict[str, str] = Field(default_factory=dict)
    extra_pip_packages: tuple[PipRequirement, ...] = ()
    networks: tuple[str, ...] = ()
    network_mode: str | None = None
    volumes: tuple[VolumeSpec, ...] = ()
    mem_limit: str | None = None
    image_pull_policy: Literal["IfNotPresent", "Always", "IfPossible", "Never"] | None = None
    auto_remove: bool = False
    privileged: bool = False
    stream_output: bool = True
    registry_credentials: str | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(
                format_validation_error(exc, DockerJob, where="DockerJob(...)")
            ) from None

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

    @model_validator(mode="after")
    def _consistent(self) -> DockerJob:
        if self.networks and self.network_mode:
            msg = "networks and network_mode are exclusive (Docker refuses both); keep one"
            raise ValueError(msg)
        if self.extra_pip_packages and "EXTRA_PIP_PACKAGES" in self.env:
            msg = "give extra pip packages either as extra_pip_packages or env.EXTRA_PIP_PACKAGES"
            raise ValueError(msg)
        return self

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


_SECTION_FIELDS = (
    "image",
    "env",
    "extra_pip_packages",
    "networks",
    "network_mode",
    "volumes",
    "mem_limit",
    "image_pull_policy",
    "auto_remove",
    "privileged",
    "stream_output",
)


def _stack(stack: Stack | str | None) -> Stack:
    from oxeo_flows.stack import resolve_stack

    return resolve_stack(stack)


def docker_job(*, stack: Stack | str | None = None, **overrides: Any) -> DockerJob:
    """Build a `DockerJob` from the stack's ``docker`` section and keyword overrides.

    Args:
        stack: The stack to read (default: the active stack).
        **overrides: Any `DockerJob` field, e.g. ``image=``, ``extra_pip_packages=["s3fs"]``,
            ``registry_credentials="ghcr"``.

    Returns:
        The validated job.

    Raises:
        ConfigError: An unknown or invalid field; the message names it and where it came from.

    Example:
        ```python
        from oxeo_flows import docker_job

        job = docker_job(image="prefecthq/prefect:3-python3.11", extra_pip_packages=["s3fs"])
        flow.deploy("etl", work_pool_name="aws-docker", job_variables=job.job_variables())
        ```
    """
    stack = _stack(stack)
    section = stack.docker
    data: dict[str, Any] = {
        name: getattr(section, name)
        for name in _SECTION_FIELDS
        if name in section.model_fields_set or getattr(section, name) not in (None, (), {})
    }
    if section.registry_credentials_block:
        data["registry_credentials"] = section.registry_credentials_block
    data.update(overrides)
    where = f"docker_job() (stack {stack.name!r}: docker section and arguments)"
    return build(DockerJob, data, where=where)


def docker_registry_credentials(
    registry_url: str | None = None,
    username: str | None = None,
    *,
    password_secret: str | None = None,
    stack: Stack | str | None = None,
    reauth: bool = True,
) -> DockerRegistryCredentials:
    """Build a `prefect_docker.DockerRegistryCredentials` block, reading the password from a secret.

    The password is never a literal: it is loaded with `load_secret` from the stack's secret
    sources (``registry-password`` by default, i.e. env ``REGISTRY_PASSWORD`` with the env
    source). Save the block with `ensure_block` and reference it by name in `DockerJob`.

    Args:
        registry_url: Registry host (default: ``docker.registry-url``).
        username: User name (default: ``docker.registry-username``).
        password_secret: Secret name (default: ``docker.registry-password-secret``, then
            ``registry-password``).
        stack: The stack to read (default: the active stack).
        reauth: Log in again even when a login is cached.

    Returns:
        An unsaved block.

    Raises:
        ConfigError: No registry URL or user name.
        SecretNotFoundError: The password secret is in no source.
        MissingExtraError: ``prefect-docker`` is not installed.
    """
    stack = _stack(stack)
    section = stack.docker
    url = registry_url or section.registry_url
    user = username or section.registry_username
    missing = [label for label, value in (("registry_url", url), ("username", user)) if not value]
    if missing:
        msg = (
            f"docker_registry_credentials(): {' and '.join(missing)} not given and not set in "
            f"stack {stack.name!r} (docker.registry-url / docker.registry-username)"
        )
        raise ConfigError(msg)
    from oxeo_flows._extras import require
    from oxeo_flows.secrets import load_secret

    secret_name = password_secret or section.registry_password_secret or "registry-password"
    password = load_secret(secret_name, stack=stack)
    prefect_docker = require("prefect_docker", "docker")
    block: DockerRegistryCredentials = prefect_docker.DockerRegistryCredentials(
        registry_url=url, username=user, password=password, reauth=reauth
    )
    return block


def ensure_docker_pool(
    name: str | None = None,
    job: DockerJob | None = None,
    *,
    stack: Stack | str | None = None,
    description: str | None = None,
    concurrency_limit: int | None = None,
    adopt: bool | None = None,
    dry_run: bool = False,
) -> PoolResult:
    """Create or update a ``docker`` work pool whose job defaults are ``job``'s variables.

    Idempotent: an up-to-date pool is read once and not written (``unchanged``). The merge
    policy is `oxeo_flows.pools.ensure_pool`'s.

    Args:
        name: Pool name (default: ``docker.work-pool``, then the stack's default work pool).
        job: The job defaults (default: `docker_job` of the stack, or of ``[pools.<name>]``
            when it is a ``docker`` pool).
        stack: The stack to read (default: the active stack).
        description: Pool description.
        concurrency_limit: Pool concurrency limit.
        adopt: Take over a pool oxeo-flows did not create.
        dry_run: Read only.

    Returns:
        A `PoolResult`.

    Raises:
        ConfigError: Invalid job settings.
        PoolError: The pool exists with another type or unmanaged, or the API failed.
    """
    from oxeo_flows.pools import ensure_pool
    from oxeo_flows.stack import DockerPoolSection

    stack = _stack(stack)
    pool_name = name or stack.docker.work_pool or stack.default_work_pool
    section = stack.pools.get(pool_name)
    if section is not None and not isinstance(section, DockerPoolSection):
        msg = f"pools.{pool_name} of stack {stack.name!r} has type {section.type!r}, not 'docker'"
        raise ConfigError(msg)
    if job is None:
        if section is not None:
            fields = {
                k: getattr(section, k) for k in _SECTION_FIELDS if k in section.model_fields_set
            }
            if section.registry_credentials_block:
                fields["registry_credentials"] = section.registry_credentials_block
            job = docker_job(stack=stack, **fields)
        else:
            job = docker_job(stack=stack)
    if section is not None:
        description = description if description is not None else section.description
        if concurrency_limit is None:
            concurrency_limit = section.concurrency_limit
        if adopt is None:
            adopt = section.adopt
    return ensure_pool(
        pool_name,
        type="docker",
        defaults=_pool_defaults(resolve_job_variables(job)),
        description=description,
        concurrency_limit=concurrency_limit,
        adopt=bool(adopt),
        dry_run=dry_run,
    )


def resolve_job_variables(job: DockerJob) -> dict[str, Any]:
    """Render ``job``'s variables with the registry block referenced by id (reads the API).

    Args:
        job: The job.

    Returns:
        The job variables, ready for a pool or a deployment.

    Raises:
        BlockError: The registry credentials block does not exist or the API failed.
    """
    if job.registry_credentials is None:
        return job.job_variables()
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from oxeo_flows.errors import BlockError

    slug = f"{REGISTRY_BLOCK_TYPE}/{job.registry_credentials}"
    try:
        with get_client(sync_client=True) as client:
            doc = client.read_block_document_by_name(
                job.registry_credentials, block_type_slug=REGISTRY_BLOCK_TYPE
            )
    except ObjectNotFound as exc:
        msg = (
            f"registry credentials block {slug!r} does not exist; save it first with "
            f"ensure_block(docker_registry_credentials(), {job.registry_credentials!r})"
        )
        raise BlockError(msg) from exc
    except Exception as exc:
        msg = f"cannot read block {slug!r} from the Prefect API: {exc}"
        raise BlockError(msg) from exc
    return job.job_variables(registry_block_id=str(doc.id))


def _pool_defaults(variables: Mapping[str, Any]) -> dict[str, Any]:
    return dict(variables)
