"""Build phase of `apply_stack`: every object the stack declares, validated, before any I/O."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from oxeo_flows.apply._plan import BLOCK_MARKER_PREFIX, MANAGED_BLOCKS_VARIABLE
from oxeo_flows.errors import OxeoFlowsError

if TYPE_CHECKING:
    from prefect.blocks.core import Block

    from oxeo_flows.stack import Stack

__all__ = ["BlockSpec", "PoolSpec", "build_blocks", "build_pools", "build_variables"]

_VARIABLE_NAME = re.compile(r"^[a-z0-9_-]{1,255}$")


@dataclass
class PoolSpec:
    """A pool of the stack, its job spec built and validated."""

    name: str
    type: str
    section: Any
    job: Any  # VertexJob | DockerJob | dict of process defaults


@dataclass
class BlockSpec:
    """A block of the stack, built (secrets loaded), with its document name and type slug."""

    name: str
    slug: str
    block: Block
    role: Literal["aws-credentials", "storage", "registry"]


def build_pools(stack: Stack, errors: list[str]) -> list[PoolSpec]:
    """Build every pool's job spec; problems go to ``errors``."""
    from oxeo_flows.pools.kinds import pool_kind

    out: list[PoolSpec] = []
    for name, section in stack.pools.items():
        try:
            job = pool_kind(section.type).build_job(stack, name, {})
        except OxeoFlowsError as exc:
            errors.append(f"pools.{name} ({section.type}): {exc}")
            continue
        out.append(PoolSpec(name, section.type, section, job))
    return out


def _registry_blocks(stack: Stack, errors: list[str]) -> list[BlockSpec]:
    """The registry credentials blocks of ``[docker]`` and of every docker pool (layered)."""
    from oxeo_flows.docker_pool import REGISTRY_BLOCK_TYPE
    from oxeo_flows.pools.kind_docker import KIND, docker_registry_credentials
    from oxeo_flows.pools.kinds import layered_section

    out: list[BlockSpec] = []
    targets: list[tuple[str | None, str]] = [(None, "docker")]
    targets += [(n, f"pools.{n}") for n, p in stack.pools.items() if p.type == "docker"]
    seen: set[str] = set()
    for pool, where in targets:
        try:
            section: Any = layered_section(stack, KIND, pool)[0]
        except OxeoFlowsError:
            continue  # reported by build_pools
        name = section.registry_credentials_block
        if not name or not section.registry_url or name in seen:
            continue
        seen.add(name)
        try:
            block = docker_registry_credentials(stack=stack, pool=pool)
        except OxeoFlowsError as exc:
            errors.append(f"{where}.registry-credentials-block {name!r}: {exc}")
            continue
        out.append(BlockSpec(name, REGISTRY_BLOCK_TYPE, block, "registry"))
    return out


def build_blocks(stack: Stack, errors: list[str]) -> list[BlockSpec]:
    """Build the AWS credentials, S3 storage and registry blocks; problems go to ``errors``."""
    out: list[BlockSpec] = []
    creds_name = stack.storage.credentials_block or stack.aws.credentials_block
    creds: Any = None
    if creds_name or stack.storage.bucket:
        try:
            from oxeo_flows.aws import aws_credentials

            creds = aws_credentials(stack=stack)
            if creds_name:
                out.append(BlockSpec(creds_name, "aws-credentials", creds, "aws-credentials"))
        except OxeoFlowsError as exc:
            errors.append(f"aws credentials block {creds_name!r}: {exc}")
    if stack.storage.bucket and creds is not None:
        try:
            from oxeo_flows.storage import s3_bucket, storage_block_name

            bucket = s3_bucket(folder=stack.storage.folder or "", stack=stack, credentials=creds)
            out.append(BlockSpec(storage_block_name(stack), "s3-bucket", bucket, "storage"))
        except OxeoFlowsError as exc:
            errors.append(f"storage block: {exc}")
    out.extend(_registry_blocks(stack, errors))
    for spec in out:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", spec.name):
            errors.append(
                f"block name {spec.name!r} ({spec.slug}) is invalid: use lowercase letters, "
                "digits and '-'"
            )
    return out


def build_variables(stack: Stack, errors: list[str]) -> dict[str, Any]:
    """Check every variable's name and value (JSON); problems go to ``errors``."""
    out: dict[str, Any] = {}
    for name, value in stack.variables.items():
        where = stack.describe("variables", name)
        if not _VARIABLE_NAME.match(name):
            errors.append(
                f"{where}: {name!r} is not a valid Prefect variable name "
                "(lowercase letters, digits, '-' and '_', at most 255 characters)"
            )
            continue
        if name == MANAGED_BLOCKS_VARIABLE or name.startswith(BLOCK_MARKER_PREFIX):
            errors.append(
                f"{where}: {name!r} is reserved by oxeo-flows (the names "
                f"{MANAGED_BLOCKS_VARIABLE!r} and {BLOCK_MARKER_PREFIX}* mark the blocks it "
                "manages): rename the variable"
            )
            continue
        try:
            out[name] = json.loads(json.dumps(value))
        except (TypeError, ValueError) as exc:
            errors.append(f"{where}: the value is not JSON-serialisable ({exc})")
    return out
