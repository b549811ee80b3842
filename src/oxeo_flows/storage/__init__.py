"""S3 code storage: the storage block, an incremental code sync, and its pull step.

- `oxeo_flows.storage.names`: where code goes (bucket, folder, block name);
- `oxeo_flows.storage.files`: which files are code, and their digests;
- `oxeo_flows.storage.s3`: the boto3 client, S3 error translation, listing and comparing;
- `oxeo_flows.storage.sync`: `sync_code`; `oxeo_flows.storage.pull`: `pull_code`;
- `oxeo_flows.storage.block`: `s3_bucket`, the prefect-aws `S3Bucket` block.

Importing this package imports neither boto3 nor Prefect.
"""

from __future__ import annotations

from oxeo_flows._checks import check_bucket_name, check_folder
from oxeo_flows.storage.block import s3_bucket
from oxeo_flows.storage.files import (
    DEFAULT_IGNORES,
    PULL_STATE_FILE,
    FileDigest,
    code_files,
    file_digest,
)
from oxeo_flows.storage.names import storage_block_name
from oxeo_flows.storage.pull import iter_remote_keys, pull_code
from oxeo_flows.storage.report import SyncReport
from oxeo_flows.storage.s3 import SHA256_METADATA_KEY, map_s3_errors
from oxeo_flows.storage.sync import sync_code

__all__ = [
    "DEFAULT_IGNORES",
    "PULL_STATE_FILE",
    "SHA256_METADATA_KEY",
    "FileDigest",
    "SyncReport",
    "check_bucket_name",
    "check_folder",
    "code_files",
    "file_digest",
    "iter_remote_keys",
    "map_s3_errors",
    "pull_code",
    "s3_bucket",
    "storage_block_name",
    "sync_code",
]
