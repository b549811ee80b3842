"""`s3_bucket`, `aws_credentials`, `sync_code` and `pull_code` arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from oxeo_flows import aws_credentials, s3_bucket, sync_code
from oxeo_flows.errors import ConfigError, StorageError
from oxeo_flows.storage import pull_code
from tests.bad_input._expect import cases, expect

NAMES = "lowercase letters, digits, '.' and '-'"


BUCKET_CASES = [
    ("none-configured", s3_bucket, "storage.bucket", "OXEO_FLOWS_STORAGE__BUCKET"),
    ("underscore", lambda: s3_bucket("Bad_Bucket"), "bucket argument", NAMES),
    ("s3-url", lambda: s3_bucket("s3://b-ok/x"), "bucket argument", "put a path in 'folder'"),
    ("too-short", lambda: s3_bucket("ab"), "bucket argument", "3 to 63 characters"),
    ("too-long", lambda: s3_bucket("a" * 64), "bucket argument", "3 to 63 characters"),
    ("ip-address", lambda: s3_bucket("10.0.0.1"), "bucket argument", "IP address"),
    ("cyrillic-o", lambda: s3_bucket("bucket-\u043ek"), "bucket argument", NAMES),
    ("trailing-hyphen", lambda: s3_bucket("bucket-"), "bucket argument", "start and end"),
    ("folder-absolute", lambda: s3_bucket("b-ok", "/abs"), "folder argument", "must be relative"),
    (
        "folder-dotdot",
        lambda: s3_bucket("b-ok", "a/../b"),
        "folder argument",
        "must not contain '.' or '..'",
    ),
    ("stack-int", lambda: s3_bucket("b-ok", stack=3), "stack must be", "a stack name"),
    pytest.param(
        lambda: s3_bucket("b-ok", bucket_fodler="x"),
        "bucket_fodler",
        "did you mean 'bucket_folder'",
        id="override-typo",
    ),
    (
        "credentials-typo",
        lambda: aws_credentials(regoin_name="x"),
        "['regoin_name']",
        "valid ones are",
    ),
    pytest.param(
        lambda: aws_credentials(region_name="eu west"),
        "region_name",
        "like 'eu-west-1'",
        id="credentials-region-space",
    ),
]


@pytest.mark.parametrize(("call", "field", "fix"), cases(BUCKET_CASES))
def test_bad_bucket(call, field: str, fix: str) -> None:
    expect(ConfigError, call, field, fix)


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "proj"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    return src


SYNC_CASES = [
    ("src-empty", lambda p: sync_code("", bucket="b-ok"), "sync source is empty", "e.g. '.'"),
    (
        "src-whitespace",
        lambda p: sync_code("  ", bucket="b-ok"),
        "sync source",
        "give the project directory",
    ),
    ("src-missing", lambda p: sync_code(p / "nope", bucket="b-ok"), "nope", "not a directory"),
    (
        "src-is-file",
        lambda p: sync_code(_src(p) / "a.py", bucket="b-ok"),
        "a.py",
        "not a directory",
    ),
    ("no-bucket", lambda p: sync_code(_src(p)), "storage.bucket", "OXEO_FLOWS_STORAGE__BUCKET"),
    ("bucket-bad", lambda p: sync_code(_src(p), bucket="Bad_Bucket"), "Bad_Bucket", NAMES),
    (
        "folder-dotdot",
        lambda p: sync_code(_src(p), bucket="b-ok", folder="../up"),
        "folder",
        "must not contain '.' or '..'",
    ),
    (
        "concurrency-zero",
        lambda p: sync_code(_src(p), bucket="b-ok", max_concurrency=0),
        "max_concurrency",
        "at least 1",
    ),
    (
        "multipart-negative",
        lambda p: sync_code(_src(p), bucket="b-ok", multipart_threshold=-1),
        "multipart_threshold",
        "at least 5 MiB",
    ),
    ("pull-nothing", lambda p: pull_code(), "bucket= or block=", "storage.bucket"),
    pytest.param(
        lambda p: pull_code("b-ok", max_concurrency=0),
        "max_concurrency",
        "at least 1",
        id="pull-concurrency-zero",
    ),
]


@pytest.mark.parametrize(("call", "field", "fix"), cases(SYNC_CASES))
def test_bad_sync_or_pull(tmp_path: Path, call, field: str, fix: str) -> None:
    expect(ConfigError, lambda: call(tmp_path), field, fix)


def test_pull_into_a_file(tmp_path: Path, moto: str) -> None:
    import boto3

    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket="bad-input-pull", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    boto3.client("s3", region_name="eu-west-1").put_object(
        Bucket="bad-input-pull", Key="code/a.py", Body=b"x = 1\n"
    )
    target = tmp_path / "file"
    target.write_text("not a directory")
    expect(
        StorageError,
        lambda: pull_code("bad-input-pull", "code", directory=str(target)),
        str(target),
        "File exists",
    )
