"""The prefect-aws `S3Bucket` block of a stack's code storage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows.errors import ConfigError
from oxeo_flows.storage.names import resolve_target

if TYPE_CHECKING:
    from prefect_aws import AwsCredentials, S3Bucket

    from oxeo_flows.stack import Stack

__all__ = ["s3_bucket"]


def s3_bucket(
    bucket: str | None = None,
    folder: str | None = None,
    *,
    stack: Stack | str | None = None,
    credentials: AwsCredentials | None = None,
    **overrides: Any,
) -> S3Bucket:
    """Build a `prefect_aws.S3Bucket` block from the stack's ``storage`` section.

    Args:
        bucket: Bucket name (default: ``storage.bucket``).
        folder: Key prefix inside the bucket (default: ``storage.folder``).
        stack: The stack to read: a `Stack`, a stack name, or None for the active stack.
        credentials: Credentials block (default: `aws_credentials` from the same stack).
        **overrides: Other `S3Bucket` fields.

    Returns:
        An unsaved `S3Bucket` block; save it idempotently with `ensure_block`, or pass it to
        `sync_code` / `pull_code` as ``bucket=``.

    Raises:
        ConfigError: No bucket configured, or an invalid bucket name or folder.
        MissingExtraError: ``prefect-aws`` is not installed.

    Example:
        ```python
        from oxeo_flows import ensure_block, s3_bucket

        ensure_block(s3_bucket("oxeo-flow-code", "pipelines"), "oxeo-code")
        ```
    """
    from oxeo_flows.stack import resolve_stack

    the_stack = resolve_stack(stack)
    name, prefix = resolve_target(the_stack, bucket, folder, default_folder="")
    prefect_aws = require("prefect_aws", "aws")
    if credentials is None:
        from oxeo_flows.aws import aws_credentials

        credentials = aws_credentials(stack=the_stack)
    fields = set(prefect_aws.S3Bucket.model_fields) - {
        "bucket_name",
        "bucket_folder",
        "credentials",
    }
    unknown = sorted(set(overrides) - fields)
    if unknown:
        import difflib

        hints = [
            f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)
            for key in unknown
            for close in [difflib.get_close_matches(key, [*fields, "bucket_folder"], n=1)]
        ]
        msg = (
            f"s3_bucket(): unknown S3Bucket field(s) {', '.join(hints)}; "
            f"valid extra fields are {sorted(fields)}"
        )
        raise ConfigError(msg)
    try:
        block: S3Bucket = prefect_aws.S3Bucket(
            bucket_name=name, bucket_folder=prefix, credentials=credentials, **overrides
        )
    except (TypeError, ValueError) as exc:
        msg = f"s3_bucket(): invalid S3Bucket field in {sorted(overrides)}: {exc}"
        raise ConfigError(msg) from exc
    return block
