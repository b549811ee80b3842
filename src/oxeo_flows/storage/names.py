"""Where code goes: bucket and folder from arguments, an `S3Bucket` block or the stack.

The pure validators `check_bucket_name` and `check_folder` live in `oxeo_flows._checks` (below
the stack layer, which uses them too); this module resolves them against a stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oxeo_flows._checks import check_bucket_name, check_folder
from oxeo_flows.errors import ConfigError

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack
    from oxeo_flows.storage.settings import StackView

__all__ = ["Target", "resolve_target", "safe_folder", "storage_block_name", "unpack_bucket"]


def storage_block_name(stack: Stack, folder: str | None = None) -> str:
    """The name of the `S3Bucket` block that holds a stack's code.

    ``storage.block-name`` when set; otherwise ``<stack>-code-<folder or bucket>``, with
    ``folder`` defaulting to ``storage.folder``. `deploy_flow` and ``oxeo-flows apply`` both use
    this, so they write the same block when ``storage.folder`` (or ``storage.block-name``) is set.

    Args:
        stack: The stack.
        folder: The code folder actually used (default: ``storage.folder``).

    Returns:
        A valid block document name.
    """
    if stack.storage.block_name:
        return stack.storage.block_name
    folder = stack.storage.folder if folder is None else folder
    base = f"{stack.name}-code-{folder or stack.storage.bucket}"
    return re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:100]


def safe_folder(name: str) -> str:
    """A key prefix made of a directory name (the default folder of a sync)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return cleaned or "code"


@dataclass(frozen=True)
class Target:
    """A bucket given as a name or as an `S3Bucket` block, unpacked."""

    bucket: str | None
    folder: str | None
    credentials: Any


def unpack_bucket(bucket: Any, folder: str | None, credentials: Any, *, where: str) -> Target:
    """Accept a bucket name or an `S3Bucket` block (its folder and credentials fill the gaps).

    Duck-typed on ``bucket_name`` so a plain name never imports prefect-aws.

    Raises:
        ConfigError: ``bucket`` is neither a string nor an `S3Bucket`-like block.
    """
    if bucket is None or isinstance(bucket, str):
        return Target(bucket, folder, credentials)
    name = getattr(bucket, "bucket_name", None)
    if not isinstance(name, str):
        msg = (
            f"{where}: bucket must be a bucket name or an S3Bucket block, "
            f"got {type(bucket).__name__}"
        )
        raise ConfigError(msg)
    block_folder = getattr(bucket, "bucket_folder", "") or ""
    block_creds = getattr(bucket, "credentials", None)
    if credentials is None and hasattr(block_creds, "get_boto3_session"):
        credentials = block_creds
    return Target(name, block_folder if folder is None else folder, credentials)


def resolve_target(
    stack: Stack | StackView, bucket: str | None, folder: str | None, *, default_folder: str
) -> tuple[str, str]:
    """Validated ``(bucket, folder)``: the arguments, else the stack's ``storage`` section.

    Raises:
        ConfigError: No bucket anywhere, or an invalid name or folder (naming where it came
            from).
    """
    if bucket is not None:
        name = check_bucket_name(bucket, where="bucket argument")
    elif stack.storage.bucket is not None:
        name = check_bucket_name(stack.storage.bucket, where=stack.describe("storage", "bucket"))
    else:
        msg = (
            f"No S3 bucket for code storage: stack {stack.name!r} has no storage.bucket and no "
            "bucket= argument was given. Set [tool.oxeo-flows.stacks."
            f'{stack.name}.storage] bucket = "..." or OXEO_FLOWS_STORAGE__BUCKET.'
        )
        raise ConfigError(msg)
    if folder is not None:
        prefix = check_folder(folder, where="folder argument")
    elif stack.storage.folder is not None:
        prefix = check_folder(stack.storage.folder, where=stack.describe("storage", "folder"))
    else:
        prefix = check_folder(default_folder, where="default folder (the source directory name)")
    return name, prefix
