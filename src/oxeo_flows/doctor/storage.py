"""Code storage checks: the bucket exists and is writable (a probe object written, removed).

The S3 client and the error texts are those of `oxeo_flows.storage.s3` (the same client
`sync_code` uses, through boto3 directly; no prefect-aws import).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from oxeo_flows.errors import OxeoFlowsError, StorageError

if TYPE_CHECKING:
    from oxeo_flows.doctor.report import Findings
    from oxeo_flows.stack import Stack

__all__ = ["check_storage"]


def check_storage(stack: Stack, out: Findings) -> None:
    """``storage.bucket`` exists and these credentials may write and delete under the folder."""
    from oxeo_flows.storage.s3 import make_client, map_s3_errors

    bucket = stack.storage.bucket
    if not bucket:
        return
    try:
        client = make_client(None, 1, stack=stack)
        with map_s3_errors(f"bucket {bucket!r}", bucket):
            client.head_bucket(Bucket=bucket)
    except StorageError as exc:
        missing = "does not exist" in str(exc)
        fix = (
            f"aws s3 mb s3://{bucket} (or fix {stack.describe('storage', 'bucket')})"
            if missing
            else "grant s3:ListBucket on the bucket to these credentials; check aws.region / "
            "aws.endpoint-url"
        )
        out.add("storage", "bucket", "fail", str(exc), fix)
        return
    except OxeoFlowsError as exc:
        out.add("storage", "bucket", "fail", str(exc), "pip install 'oxeo-flows[aws]'")
        return
    out.add("storage", "bucket", "ok", f"s3://{bucket} exists")
    folder = (stack.storage.folder or "").strip("/")
    key = f"{folder + '/' if folder else ''}.oxeo-flows-doctor-{uuid.uuid4().hex}"
    try:
        with map_s3_errors(f"cannot write s3://{bucket}/{key}", bucket):
            client.put_object(Bucket=bucket, Key=key, Body=b"oxeo-flows doctor probe\n")
            client.delete_object(Bucket=bucket, Key=key)
    except StorageError as exc:
        out.add(
            "storage",
            "writable",
            "fail",
            str(exc),
            "grant s3:PutObject and s3:DeleteObject on the bucket (prefix) to these credentials",
        )
        return
    out.add(
        "storage",
        "writable",
        "ok",
        f"wrote and removed a probe object under s3://{bucket}/{folder}",
    )
