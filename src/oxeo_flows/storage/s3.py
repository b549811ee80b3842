"""The S3 adapter of code storage: the boto3 client, error translation, listing and comparing.

Every botocore / s3transfer error (and an `OSError` raised while a file is streamed) is turned
into a `StorageError` in one place, `map_s3_errors`, in the shape of httpx's
``map_httpcore_exceptions``; `describe_error` is the one text for an S3 failure (used by the
sync's per-file report and by ``oxeo-flows doctor``).

boto3 is imported on first use; nothing here imports Prefect or prefect-aws unless a
credentials block is given (or the stack asks for a role to assume).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows.errors import OxeoFlowsError, StorageError

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack
    from oxeo_flows.storage.settings import StackView

__all__ = [
    "SHA256_METADATA_KEY",
    "CallCounter",
    "Remote",
    "describe_error",
    "delete_keys",
    "error_code",
    "is_sdk_error",
    "list_remote",
    "list_stamped",
    "make_client",
    "map_s3_errors",
    "object_key",
    "same_content",
]

#: Object metadata key holding the SHA-256 of the content (``x-amz-meta-oxeo-sha256``).
SHA256_METADATA_KEY = "oxeo-sha256"

_DENIED = frozenset({"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId"})
_MISSING_BUCKET = frozenset({"NoSuchBucket", "404", "NotFound"})
#: Codes of a conditional write (``IfMatch`` / ``IfNoneMatch``) that lost its race.
CONFLICT_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
#: Codes of a missing object.
MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


# ----------------------------------------------------------------------------- errors


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` (``""`` for other errors)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def describe_error(exc: BaseException, bucket: str) -> str:
    """What an S3 failure means for the user, and what to do about it."""
    code = error_code(exc)
    if code in _MISSING_BUCKET:
        return (
            f"bucket {bucket!r} does not exist; create it (e.g. in terraform) or fix storage.bucket"
        )
    if code in _DENIED or code == "SignatureDoesNotMatch":
        return (
            f"access to bucket {bucket!r} was denied ({code}); check the AWS credentials "
            "(aws.profile, instance role) and the bucket policy"
        )
    name = type(exc).__name__
    if name in {"NoCredentialsError", "PartialCredentialsError"}:
        return (
            "no AWS credentials found; set aws.profile in the stack, AWS_PROFILE, or run where "
            "an instance role is available (in Docker on EC2, see the IMDSv2 hop-limit note)"
        )
    if name == "ProfileNotFound":
        return f"{exc}; fix aws.profile in the stack (or AWS_PROFILE)"
    if name in {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"}:
        return f"cannot reach the S3 endpoint ({exc}); check aws.endpoint-url / the network"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or name}: {exc.filename}"
    return f"{name}: {exc}"


def is_sdk_error(exc: BaseException) -> bool:
    """True for errors of boto3, botocore or s3transfer, and for `OSError`."""
    mod = type(exc).__module__
    return mod.startswith(("botocore", "boto3", "s3transfer")) or isinstance(exc, OSError)


@contextlib.contextmanager
def map_s3_errors(what: str, bucket: str) -> Iterator[None]:
    """Translate S3 SDK errors raised in the block into a `StorageError`.

    Args:
        what: What was being done, e.g. ``"Cannot list s3://b/f"``; the message is
            ``"<what>: <describe_error(...)>"``.
        bucket: The bucket, for the message.

    Raises:
        StorageError: A boto3 / botocore / s3transfer error or an `OSError` was raised.
    """
    try:
        yield
    except OxeoFlowsError:
        raise
    except Exception as exc:
        if not is_sdk_error(exc):
            raise
        msg = f"{what}: {describe_error(exc, bucket)}"
        raise StorageError(msg) from exc


# ----------------------------------------------------------------------------- client


def _config(max_concurrency: int) -> Any:
    from botocore.config import Config

    return Config(
        max_pool_connections=max(10, max_concurrency * 2),
        retries={"max_attempts": 3, "mode": "standard"},
    )


def make_client(
    credentials: Any = None, max_concurrency: int = 8, *, stack: Stack | StackView | None = None
) -> Any:
    """A boto3 S3 client.

    Args:
        credentials: A prefect-aws credentials block (`AwsCredentials`, `MinIOCredentials`);
            when None, boto3 itself is used with the stack's ``aws.profile``, ``aws.region``
            and ``aws.endpoint-url`` (or boto3's own chain without a stack).
        max_concurrency: Parallel transfers the connection pool must serve.
        stack: The stack whose ``[aws]`` section applies when ``credentials`` is None.

    Returns:
        A boto3 S3 client.

    Raises:
        StorageError: The profile does not exist (or another botocore error).
        MissingExtraError: boto3 (or, for a role to assume, prefect-aws) is not installed.
    """
    boto3 = require("boto3", "aws")
    config = _config(max_concurrency)
    if credentials is None and stack is not None and stack.aws.assume_role_arn:
        from oxeo_flows.aws import aws_credentials
        from oxeo_flows.storage.settings import StackView

        full = stack.load() if isinstance(stack, StackView) else stack
        credentials = aws_credentials(stack=full)  # prefect-aws assumes the role
    with map_s3_errors("Cannot create an S3 client", "?"):
        if credentials is None:
            aws = stack.aws if stack is not None else None
            session = boto3.session.Session(
                profile_name=aws.profile if aws else None,
                region_name=aws.region if aws else None,
            )
            endpoint = aws.endpoint_url if aws else None
            return session.client("s3", config=config, endpoint_url=endpoint)
        session = credentials.get_boto3_session()
        params = dict(credentials.aws_client_parameters.get_params_override())
        given = params.pop("config", None)
        if given is not None:
            config = config.merge(given)
        return session.client("s3", config=config, **params)


class CallCounter:
    """Counts API calls made by a boto3 client through its own event system."""

    def __init__(self, client: Any) -> None:
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._client = client
        self._id = f"oxeo-flows-count-{id(self)}"

    def _on_call(self, model: Any = None, **_: Any) -> None:
        name = getattr(model, "name", "unknown")
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def __enter__(self) -> CallCounter:
        self._client.meta.events.register("before-call.s3", self._on_call, unique_id=self._id)
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.meta.events.unregister("before-call.s3", unique_id=self._id)


# ----------------------------------------------------------------------------- objects


@dataclass(frozen=True)
class Remote:
    """One object under the folder: its size and ETag."""

    size: int
    etag: str


def object_key(folder: str, rel: str) -> str:
    """The key of ``rel`` under ``folder``."""
    return f"{folder}/{rel}" if folder else rel


def list_remote(client: Any, bucket: str, folder: str) -> dict[str, Remote]:
    """Every object under ``folder``, by path relative to it (one call per 1,000 objects)."""
    prefix = f"{folder}/" if folder else ""
    out: dict[str, Remote] = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            rel = key[len(prefix) :]
            if not rel or rel.endswith("/"):
                continue
            out[rel] = Remote(int(obj["Size"]), str(obj["ETag"]).strip('"'))
    return out


def same_content(
    client: Any, bucket: str, key: str, digest: tuple[str, str, int], remote: Remote | None
) -> bool:
    """True when the object ``key`` holds the content whose ``(md5, sha256, size)`` is given.

    A single-part object's ETag is the MD5 of its content; a multipart one's is not, so the
    SHA-256 every upload stores in the metadata is read with one ``HeadObject``.
    """
    md5, sha256, size = digest
    if remote is None or remote.size != size:
        return False
    if "-" not in remote.etag and remote.etag == md5:
        return True
    head = client.head_object(Bucket=bucket, Key=key)
    return bool(head.get("Metadata", {}).get(SHA256_METADATA_KEY) == sha256)


@dataclass(frozen=True)
class Stamped:
    """One listed object: its size and when it was last written (server time, epoch s)."""

    size: int
    modified: float


def list_stamped(client: Any, bucket: str, prefix: str) -> tuple[dict[str, Stamped], float]:
    """Every key under ``prefix`` (relative to it) with size and age, and the server's time.

    The server time is read off the ``Date`` header of the listing responses, so ages are
    measured on S3's clock, never the local one.
    """
    out: dict[str, Stamped] = {}
    now = 0.0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        now = max(now, server_time(page))
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            if rel:
                out[rel] = Stamped(int(obj["Size"]), obj["LastModified"].timestamp())
    # ``Date`` has a resolution of one second: never older than what was just listed.
    return out, max([now, *(st.modified for st in out.values())])


def server_time(response: Any) -> float:
    """The S3 server's clock at ``response`` (its ``Date`` header), epoch seconds."""
    import email.utils
    import time

    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    date = headers.get("date")
    if date:
        with contextlib.suppress(TypeError, ValueError):
            return email.utils.parsedate_to_datetime(date).timestamp()
    return time.time()


def delete_keys(client: Any, bucket: str, keys: list[str]) -> list[str]:
    """Delete ``keys`` with ``DeleteObjects`` (1,000 per request); return those that failed."""
    failed: list[str] = []
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        out = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        failed.extend(str(e.get("Key")) for e in out.get("Errors", []))
    return failed
