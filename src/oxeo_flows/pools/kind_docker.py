"""The ``docker`` pool kind: `docker_job` from a stack, registry credentials, `ensure_docker_pool`.

The one mapping from the stack's ``[docker]`` section (or a ``docker`` ``[pools.<name>]``
layered over it) to the `DockerJob` spec: every `DockerFields` field is taken as is and
``registry-credentials-block`` becomes the job's ``registry_credentials`` (referenced by id in
the pool, never a password).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from oxeo_flows.docker_pool import REGISTRY_BLOCK_TYPE, DockerFields, DockerJob
from oxeo_flows.errors import ConfigError
from oxeo_flows.pools._kind import BlockIds, PoolKind, layered_section, with_stack_env

#: A registry host as Docker takes it: HOST[:PORT][/PATH], optionally with a URL scheme.
_REGISTRY = re.compile(r"^(https?://)?[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._/-]*)?$")

if TYPE_CHECKING:
    from prefect_docker import DockerRegistryCredentials

    from oxeo_flows.pools._template import PoolResult
    from oxeo_flows.stack import DockerSection, Stack

__all__ = [
    "KIND",
    "docker_job",
    "docker_registry_credentials",
    "ensure_docker_pool",
    "resolve_job_variables",
]


def _section(stack: Stack, pool: str | None) -> DockerSection:
    section, _ = layered_section(stack, KIND, pool)
    return section  # type: ignore[return-value]


def docker_job(
    *, stack: Stack | str | None = None, pool: str | None = None, **overrides: Any
) -> DockerJob:
    """Build a `DockerJob` from the stack's ``docker`` section and keyword overrides.

    Args:
        stack: A `Stack`, a stack name, or None for the active stack.
        pool: Layer this ``docker`` section of ``[pools]`` over ``[docker]`` (see
            `oxeo_flows.pools.kinds`).
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
        assert job.job_variables()["env"]["EXTRA_PIP_PACKAGES"] == "s3fs"
        ```
    """
    from oxeo_flows.stack import resolve_stack

    the_stack = resolve_stack(stack)
    section = _section(the_stack, pool)
    data: dict[str, Any] = {name: getattr(section, name) for name in DockerFields.model_fields}
    if section.registry_credentials_block:
        data["registry_credentials"] = section.registry_credentials_block
    data.update(overrides)
    where = f"docker_job() (stack {the_stack.name!r}: docker section and arguments)"
    try:
        return DockerJob(**data)
    except ConfigError as exc:  # name where the values came from, once
        raise ConfigError(str(exc).replace("DockerJob(...)", where, 1)) from None


def docker_registry_credentials(
    registry_url: str | None = None,
    username: str | None = None,
    *,
    password_secret: str | None = None,
    stack: Stack | str | None = None,
    pool: str | None = None,
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
        stack: A `Stack`, a stack name, or None for the active stack.
        pool: Read the registry keys of this ``docker`` pool (layered over ``[docker]``).
        reauth: Log in again even when a login is cached.

    Returns:
        An unsaved block.

    Raises:
        ConfigError: No registry URL or user name.
        SecretNotFoundError: The password secret is in no source.
        MissingExtraError: ``prefect-docker`` is not installed.
    """
    from oxeo_flows.stack import resolve_stack

    the_stack = resolve_stack(stack)
    section = _section(the_stack, pool)
    url = registry_url or section.registry_url
    user = username or section.registry_username
    missing = [label for label, value in (("registry_url", url), ("username", user)) if not value]
    if missing:
        msg = (
            f"docker_registry_credentials(): {' and '.join(missing)} not given and not set in "
            f"stack {the_stack.name!r} (docker.registry-url / docker.registry-username)"
        )
        raise ConfigError(msg)
    if not isinstance(url, str) or not _REGISTRY.match(url.strip()):
        msg = (
            f"docker_registry_credentials(): registry_url {url!r} is not a registry host; give "
            "HOST[:PORT] (optionally with https://), e.g. 'ghcr.io' or "
            "'europe-docker.pkg.dev' (docker.registry-url)"
        )
        raise ConfigError(msg)
    if password_secret is not None and not password_secret.strip():
        msg = (
            "docker_registry_credentials(): password_secret is empty; give the name or "
            "reference of the secret that holds the registry password, or leave it out to use "
            "docker.registry-password-secret"
        )
        raise ConfigError(msg)
    from oxeo_flows._extras import require
    from oxeo_flows.secrets import load_secret

    secret_name = password_secret or section.registry_password_secret or "registry-password"
    password = load_secret(secret_name, stack=the_stack)
    prefect_docker = require("prefect_docker", "docker")
    block: DockerRegistryCredentials = prefect_docker.DockerRegistryCredentials(
        registry_url=url, username=user, password=password, reauth=reauth
    )
    return block


def _registry_hint(name: str) -> str:
    return (
        f"save it first with ensure_block(docker_registry_credentials(), {name!r}), or declare "
        "registry-url and registry-username next to registry-credentials-block so that "
        "oxeo-flows apply creates it"
    )


def _render(job: DockerJob, stack: Stack, pool: str | None, block_ids: BlockIds) -> dict[str, Any]:
    block_id = None
    if job.registry_credentials is not None:
        block_id = block_ids(REGISTRY_BLOCK_TYPE, job.registry_credentials)
    return with_stack_env(job.job_variables(registry_block_id=block_id), stack)


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
    from oxeo_flows.blocks import block_document_id

    name = job.registry_credentials
    block_id = block_document_id(REGISTRY_BLOCK_TYPE, name, hint=_registry_hint(name))
    return job.job_variables(registry_block_id=block_id)


def _build(stack: Stack, pool: str | None, overrides: Mapping[str, Any]) -> DockerJob:
    return docker_job(stack=stack, pool=pool, **overrides)


KIND = PoolKind(
    type="docker",
    runner="docker",
    section="docker",
    extra="docker",
    spec_type=DockerJob,
    remote=True,
    build_job=_build,
    render=_render,
)


def ensure_docker_pool(
    name: str | None = None,
    job: DockerJob | None = None,
    *,
    stack: Stack | str | None = None,
    description: str | None = None,
    concurrency_limit: int | None = None,
    adopt: bool = False,
    dry_run: bool = False,
) -> PoolResult:
    """Create or update a ``docker`` work pool from the stack (idempotent).

    Writes exactly what ``oxeo-flows apply`` and `deploy_flow` write for the same pool: the
    stack's job settings (``[docker]``, or ``[pools.<name>]`` layered over it) as variable
    defaults, the registry block by id, and ``OXEO_FLOWS_STACK`` in the job environment. An
    up-to-date pool is read once and not written (``unchanged``).

    Args:
        name: Pool name (default: ``docker.work-pool``, then the stack's default work pool).
        job: Job defaults to write instead of the stack's (a `DockerJob`).
        stack: A `Stack`, a stack name, or None for the active stack.
        description: Pool description (default: the ``[pools.<name>]`` one).
        concurrency_limit: Pool concurrency limit (default: the ``[pools.<name>]`` one).
        adopt: Take over a pool oxeo-flows did not create.
        dry_run: Read only.

    Returns:
        A `PoolResult`.

    Raises:
        ConfigError: Invalid job settings, or the pool is declared with another type.
        BlockError: The registry credentials block does not exist.
        PoolError: The pool exists with another type or unmanaged, or the API failed.
    """
    from oxeo_flows.pools._kind import ensure_kind_pool

    return ensure_kind_pool(
        KIND,
        name,
        stack=stack,
        job=job,
        adopt=adopt,
        dry_run=dry_run,
        description=description,
        concurrency_limit=concurrency_limit,
    )
