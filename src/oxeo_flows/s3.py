"""S3 code storage: the storage block, an incremental code sync, and its pull step.

prefect-aws's ``push_to_s3`` / ``S3Bucket.put_directory`` upload every file on every deploy and
never remove stale objects. `sync_code` uploads only new or changed files and deletes remote
objects whose local file is gone; `pull_code` is the matching run-time step that downloads only
what changed into the working directory.

How files are compared (no local state, no manifest object):

* a single-part object's ETag is the MD5 of its content, so a listing (``ListObjectsV2``) is
  enough to know that a local file is unchanged;
* a multipart object's ETag is not an MD5 (it ends in ``-<parts>``), so every upload also stores
  our own SHA-256 in the object's metadata (``x-amz-meta-oxeo-sha256``), read with one
  ``HeadObject`` when the sizes match.

An unchanged re-sync therefore costs one ``ListObjectsV2`` call per 1,000 objects and no upload.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows.errors import BlockError, ConfigError, StorageError, SyncError

if TYPE_CHECKING:
    from prefect_aws import AwsCredentials, S3Bucket

    from oxeo_flows.stack import Stack

__all__ = [
    "DEFAULT_IGNORES",
    "SHA256_METADATA_KEY",
    "SyncReport",
    "storage_block_name",
    "check_bucket_name",
    "check_folder",
    "code_files",
    "pull_code",
    "s3_bucket",
    "sync_code",
]

#: Object metadata key holding the SHA-256 of the content (``x-amz-meta-oxeo-sha256``).
SHA256_METADATA_KEY = "oxeo-sha256"
#: File written by `pull_code` in the destination to remember what it pulled.
PULL_STATE_FILE = ".oxeo-flows-pull.json"
#: Patterns (gitignore syntax) that are never synced.
DEFAULT_IGNORES: tuple[str, ...] = (
    ".git/",
    ".hg/",
    ".svn/",
    "__pycache__/",
    "*.py[cod]",
    ".venv/",
    "venv/",
    ".tox/",
    ".nox/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".ipynb_checkpoints/",
    "build/",
    "dist/",
    "*.egg-info/",
    "site/",
    "node_modules/",
    ".DS_Store",
    PULL_STATE_FILE,
)
_DEFAULT_MULTIPART_THRESHOLD = 8 * 1024 * 1024
_MIN_PART = 5 * 1024 * 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


# ----------------------------------------------------------------------------- validation


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


def check_bucket_name(name: str, *, where: str = "bucket") -> str:
    """Validate an S3 bucket name against AWS's naming rules.

    Args:
        name: The bucket name.
        where: Where the value came from, for the message.

    Returns:
        The name, unchanged.

    Raises:
        ConfigError: The name breaks a rule; the message says which.
    """
    problem = None
    if not isinstance(name, str) or not name:
        problem = "is empty"
    elif name.startswith("s3://"):
        problem = "must be a bare bucket name, without 's3://' (put a path in 'folder')"
    elif "/" in name:
        problem = "must not contain '/' (put the path in 'folder')"
    elif not 3 <= len(name) <= 63:
        problem = f"must be 3 to 63 characters long (it has {len(name)})"
    elif not _BUCKET_RE.match(name):
        problem = (
            "may only contain lowercase letters, digits, '.' and '-', and must start and end "
            "with a letter or digit"
        )
    elif ".." in name or ".-" in name or "-." in name:
        problem = "must not contain '..', '.-' or '-.'"
    elif name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3", "--x-s3")):
        problem = "uses a prefix or suffix that AWS reserves"
    else:
        with contextlib.suppress(ValueError):
            ipaddress.IPv4Address(name)
            problem = "must not be formatted as an IP address"
    if problem:
        msg = f"{where}: S3 bucket name {name!r} {problem}."
        raise ConfigError(msg)
    return name


def check_folder(folder: str | None, *, where: str = "folder") -> str:
    """Validate and normalise a key prefix (``"a/b/"`` → ``"a/b"``; ``None`` → ``""``).

    Args:
        folder: The prefix inside the bucket.
        where: Where the value came from, for the message.

    Returns:
        The prefix without leading or trailing slashes.

    Raises:
        ConfigError: The prefix escapes its folder (``..``), starts with ``/``, has empty
            parts or backslashes.
    """
    if folder is None:
        return ""
    if not isinstance(folder, str):
        msg = f"{where}: folder must be a string, got {type(folder).__name__}"
        raise ConfigError(msg)
    problem = None
    stripped = folder.rstrip("/")
    if folder.startswith("/"):
        problem = "must be relative (no leading '/')"
    elif "\\" in folder:
        problem = "must use '/' as separator, not '\\'"
    elif any(part in {"..", "."} for part in stripped.split("/")):
        problem = "must not contain '.' or '..' parts"
    elif stripped and any(not part for part in stripped.split("/")):
        problem = "must not contain empty parts ('//')"
    elif any(ord(c) < 32 for c in folder):
        problem = "must not contain control characters"
    elif len(folder.encode()) > 512:
        problem = "is too long (S3 keys are at most 1024 bytes)"
    if problem:
        msg = f"{where}: folder {folder!r} {problem}."
        raise ConfigError(msg)
    return stripped


# ----------------------------------------------------------------------------- block


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
        stack: The stack to read (default: the active stack).
        credentials: Credentials block (default: `aws_credentials` from the same stack).
        **overrides: Other `S3Bucket` fields.

    Returns:
        An unsaved `S3Bucket` block; save it idempotently with `ensure_block`.

    Raises:
        ConfigError: No bucket configured, or an invalid bucket name or folder.
        MissingExtraError: ``prefect-aws`` is not installed.

    Example:
        ```python
        from oxeo_flows import ensure_block, s3_bucket

        ensure_block(s3_bucket("oxeo-flow-code", "pipelines"), "oxeo-code")
        ```
    """
    stack = _stack(stack)
    name, prefix = _resolve_target(stack, bucket, folder, default_folder="")
    prefect_aws = require("prefect_aws", "aws")
    if credentials is None:
        from oxeo_flows.aws import aws_credentials

        credentials = aws_credentials(stack=stack)
    try:
        block: S3Bucket = prefect_aws.S3Bucket(
            bucket_name=name, bucket_folder=prefix, credentials=credentials, **overrides
        )
    except (TypeError, ValueError) as exc:
        msg = f"s3_bucket(): invalid S3Bucket field in {sorted(overrides)}: {exc}"
        raise ConfigError(msg) from exc
    return block


def _stack(stack: Stack | str | None) -> Stack:
    from oxeo_flows.stack import resolve_stack

    return resolve_stack(stack)


def _resolve_target(
    stack: Stack, bucket: str | None, folder: str | None, *, default_folder: str
) -> tuple[str, str]:
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


# ----------------------------------------------------------------------------- files


@dataclass(frozen=True)
class _LocalFile:
    rel: str
    path: Path
    size: int
    md5: str
    sha256: str


def _ignore_spec(src: Path, extra: Sequence[str]) -> Any:
    import pathspec

    lines: list[str] = list(DEFAULT_IGNORES)
    for name in (".gitignore", ".prefectignore"):
        file = src / name
        if file.is_file():
            lines.extend(file.read_text(encoding="utf-8", errors="replace").splitlines())
    lines.extend(extra)
    return pathspec.GitIgnoreSpec.from_lines(lines)


def code_files(src: str | os.PathLike[str] = ".", *, ignore: Sequence[str] = ()) -> list[str]:
    """List the files `sync_code` would consider, as sorted POSIX paths relative to ``src``.

    Skips what ``.gitignore`` and ``.prefectignore`` in ``src`` exclude, the ``ignore``
    patterns, `DEFAULT_IGNORES`, and any directory holding a ``pyvenv.cfg`` (a virtualenv).

    Args:
        src: The project directory.
        ignore: Extra gitignore-style patterns.

    Returns:
        Relative paths, sorted.

    Raises:
        ConfigError: ``src`` is not a directory.
    """
    root = Path(src)
    if not root.is_dir():
        msg = f"sync source {str(root)!r} is not a directory"
        raise ConfigError(msg)
    spec = _ignore_spec(root, ignore)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for d in sorted(dirnames):
            if (here / d / "pyvenv.cfg").exists() or spec.match_file(f"{rel_dir}{d}/"):
                continue
            if (here / d).is_symlink():
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            rel = f"{rel_dir}{f}"
            path = here / f
            if spec.match_file(rel) or not path.is_file():
                continue
            out.append(rel)
    return sorted(out)


def _hash_file(path: Path) -> tuple[str, str, int]:
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return md5.hexdigest(), sha.hexdigest(), size


def _scan(root: Path, rels: Sequence[str], pool: ThreadPoolExecutor) -> list[_LocalFile]:
    def one(rel: str) -> _LocalFile:
        path = root / rel
        md5, sha, size = _hash_file(path)
        return _LocalFile(rel, path, size, md5, sha)

    return list(pool.map(one, rels))


def _tree_digest(files: Sequence[_LocalFile]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.rel):
        h.update(f"{f.rel}\0{f.sha256}\n".encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- report


@dataclass(frozen=True)
class SyncReport:
    """What a `sync_code` (or `pull_code`) call did.

    Attributes:
        bucket: The bucket.
        folder: The key prefix (``""`` for the bucket root).
        uploaded: Relative paths uploaded (or, for a dry run, that would be).
        skipped: Relative paths already up to date.
        deleted: Relative paths of remote objects deleted (or that would be).
        failed: Relative paths whose upload failed (only set on a `SyncError`).
        pending: Relative paths not attempted because the sync stopped (only on a `SyncError`).
        bytes: Bytes uploaded.
        seconds: Wall time.
        dry_run: True when nothing was written.
        digest: SHA-256 over every synced path and content hash: a version of the code tree.
        requests: S3 API calls made, by operation name.
    """

    bucket: str
    folder: str
    uploaded: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    bytes: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    digest: str = ""
    requests: Mapping[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """True when anything was (or, for a dry run, would be) uploaded or deleted."""
        return bool(self.uploaded or self.deleted)

    @property
    def url(self) -> str:
        """``s3://bucket/folder``."""
        return f"s3://{self.bucket}/{self.folder}".rstrip("/")

    def summary(self) -> str:
        """A one-line human summary."""
        verb = "would upload" if self.dry_run else "uploaded"
        dverb = "would delete" if self.dry_run else "deleted"
        text = (
            f"{self.url}: {verb} {len(self.uploaded)} file(s) ({_human(self.bytes)}), "
            f"{len(self.skipped)} unchanged, {dverb} {len(self.deleted)} in {self.seconds:.2f}s"
        )
        if self.failed or self.pending:
            text += f"; {len(self.failed)} failed, {len(self.pending)} not attempted"
        return text


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


# ----------------------------------------------------------------------------- S3 I/O


class _Counter:
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

    def __enter__(self) -> _Counter:
        self._client.meta.events.register("before-call.s3", self._on_call, unique_id=self._id)
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.meta.events.unregister("before-call.s3", unique_id=self._id)


def _make_client(credentials: AwsCredentials | None, max_concurrency: int) -> Any:
    require("boto3", "aws")
    from botocore.config import Config

    config = Config(
        max_pool_connections=max(10, max_concurrency * 2),
        retries={"max_attempts": 3, "mode": "standard"},
    )
    if credentials is None:
        import boto3

        return boto3.session.Session().client("s3", config=config)
    session = credentials.get_boto3_session()
    params = dict(credentials.aws_client_parameters.get_params_override())
    given = params.pop("config", None)
    if given is not None:
        config = config.merge(given)
    return session.client("s3", config=config, **params)


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _describe_error(exc: BaseException, bucket: str) -> str:
    code = _error_code(exc)
    if code == "NoSuchBucket":
        return (
            f"bucket {bucket!r} does not exist; create it (e.g. in terraform) or fix storage.bucket"
        )
    if code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
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
    if name in {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"}:
        return f"cannot reach the S3 endpoint ({exc}); check aws.endpoint-url / the network"
    return f"{name}: {exc}"


def _is_sdk_error(exc: BaseException) -> bool:
    mod = type(exc).__module__
    return mod.startswith(("botocore", "boto3", "s3transfer")) or isinstance(exc, OSError)


@dataclass(frozen=True)
class _Remote:
    size: int
    etag: str


def _list_remote(client: Any, bucket: str, folder: str) -> dict[str, _Remote]:
    prefix = f"{folder}/" if folder else ""
    out: dict[str, _Remote] = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            rel = key[len(prefix) :]
            if not rel or rel.endswith("/"):
                continue
            out[rel] = _Remote(int(obj["Size"]), str(obj["ETag"]).strip('"'))
    return out


def _same(client: Any, bucket: str, key: str, local: _LocalFile, remote: _Remote | None) -> bool:
    if remote is None or remote.size != local.size:
        return False
    if "-" not in remote.etag and remote.etag == local.md5:
        return True
    # Multipart upload (or SSE-KMS): the ETag is not an MD5; compare our own hash.
    head = client.head_object(Bucket=bucket, Key=key)
    return bool(head.get("Metadata", {}).get(SHA256_METADATA_KEY) == local.sha256)


def _key(folder: str, rel: str) -> str:
    return f"{folder}/{rel}" if folder else rel


class _Progress:
    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self._bar: Any = None
        self._task: Any = None
        if enabled and total:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# ----------------------------------------------------------------------------- sync


def sync_code(
    src: str | os.PathLike[str] = ".",
    *,
    bucket: str | None = None,
    folder: str | None = None,
    delete: bool | None = None,
    dry_run: bool = False,
    stack: Stack | str | None = None,
    credentials: AwsCredentials | None = None,
    client: Any = None,
    ignore: Sequence[str] = (),
    max_concurrency: int | None = None,
    multipart_threshold: int | None = None,
    progress: bool | None = None,
) -> SyncReport:
    """Upload a project directory to S3, sending only new or changed files.

    Remote objects under the folder whose local file no longer exists are deleted (unless
    ``delete=False``). Ignored: ``.gitignore`` / ``.prefectignore`` patterns in ``src``,
    ``storage.ignore`` and ``ignore``, and always `DEFAULT_IGNORES` and virtualenvs.

    Args:
        src: The project directory.
        bucket: Bucket (default: ``storage.bucket`` of the stack).
        folder: Key prefix (default: ``storage.folder``, else the name of ``src``).
        delete: Delete stale remote objects (default: ``storage.delete``, true).
        dry_run: Compare only; upload and delete nothing.
        stack: The stack to read (default: the active stack).
        credentials: AWS credentials block (default: `aws_credentials` of the stack).
        client: A boto3 S3 client to use instead (tests, custom sessions).
        ignore: Extra gitignore-style patterns.
        max_concurrency: Parallel transfers (default: ``storage.max-concurrency``, 8).
        multipart_threshold: Files at least this large are uploaded in parts (default 8 MiB;
            at least 5 MiB, S3's minimum part size).
        progress: Show a progress bar (default: only when stderr is a terminal).

    Returns:
        A `SyncReport`.

    Raises:
        ConfigError: Missing or invalid bucket / folder, or ``src`` is not a directory.
        SyncError: An upload or delete failed; ``exc.report`` lists what was uploaded, what
            failed and what was not attempted. Nothing is deleted when an upload failed.
        StorageError: The bucket could not be listed.

    Example:
        ```python
        from oxeo_flows import sync_code

        report = sync_code(".", bucket="oxeo-flow-code", folder="pipelines")
        print(report.summary())
        ```
    """
    started = time.perf_counter()
    stack = _stack(stack)
    root = Path(src).resolve()
    name, prefix = _resolve_target(stack, bucket, folder, default_folder=_safe_folder(root.name))
    do_delete = stack.storage.delete if delete is None else delete
    workers = max_concurrency if max_concurrency is not None else stack.storage.max_concurrency
    if workers < 1:
        msg = f"max_concurrency must be at least 1, got {workers}"
        raise ConfigError(msg)
    threshold = _DEFAULT_MULTIPART_THRESHOLD if multipart_threshold is None else multipart_threshold
    if threshold < _MIN_PART:
        msg = (
            f"multipart_threshold must be at least 5 MiB ({_MIN_PART} bytes), "
            f"S3's minimum part size; got {threshold}"
        )
        raise ConfigError(msg)
    rels = code_files(root, ignore=(*stack.storage.ignore, *ignore))

    if client is None:
        if credentials is None:
            from oxeo_flows.aws import aws_credentials

            credentials = aws_credentials(stack=stack)
        client = _make_client(credentials, workers)
    show = sys.stderr.isatty() if progress is None else progress

    with _Counter(client) as counter, ThreadPoolExecutor(max_workers=workers) as pool:
        local = _scan(root, rels, pool)
        digest = _tree_digest(local)
        try:
            remote = _list_remote(client, name, prefix)
        except Exception as exc:
            if not _is_sdk_error(exc):
                raise
            msg = f"Cannot list s3://{name}/{prefix}: {_describe_error(exc, name)}"
            raise StorageError(msg) from exc

        def compare(f: _LocalFile) -> bool:
            return _same(client, name, _key(prefix, f.rel), f, remote.get(f.rel))

        try:
            same = list(pool.map(compare, local))
        except Exception as exc:
            if not _is_sdk_error(exc):
                raise
            msg = f"Cannot read s3://{name}/{prefix}: {_describe_error(exc, name)}"
            raise StorageError(msg) from exc
        to_upload = [f for f, s in zip(local, same, strict=True) if not s]
        skipped = tuple(f.rel for f, s in zip(local, same, strict=True) if s)
        local_rels = {f.rel for f in local}
        stale = tuple(sorted(r for r in remote if r not in local_rels)) if do_delete else ()

        def report(**kw: Any) -> SyncReport:
            base: dict[str, Any] = {
                "bucket": name,
                "folder": prefix,
                "skipped": skipped,
                "seconds": time.perf_counter() - started,
                "dry_run": dry_run,
                "digest": digest,
                "requests": dict(counter.counts),
            }
            base.update(kw)
            return SyncReport(**base)

        if dry_run:
            return report(
                uploaded=tuple(f.rel for f in to_upload),
                deleted=stale,
                bytes=sum(f.size for f in to_upload),
            )

        bar = _Progress(show, sum(f.size for f in to_upload), f"s3://{name}/{prefix}")
        try:
            uploaded, failed, pending, errors = _upload_all(
                client, name, prefix, to_upload, pool, threshold, bar.advance
            )
        finally:
            bar.close()
        sent = sum(f.size for f in to_upload if f.rel in set(uploaded))
        if failed:
            first = errors[0]
            msg = (
                f"Code sync to s3://{name}/{prefix} failed: {len(uploaded)} file(s) uploaded, "
                f"{len(failed)} failed ({failed[0]}: {_describe_error(first, name)}), "
                f"{len(pending)} not attempted; nothing was deleted. Fix the cause and sync again "
                "(already uploaded files will be skipped)."
            )
            raise SyncError(
                msg,
                report=report(
                    uploaded=tuple(uploaded),
                    failed=tuple(failed),
                    pending=tuple(pending),
                    bytes=sent,
                ),
            ) from first

        deleted: list[str] = []
        if stale:
            futures = {
                pool.submit(client.delete_object, Bucket=name, Key=_key(prefix, rel)): rel
                for rel in stale
            }
            wait(futures)
            problems = [
                (rel, f.exception()) for f, rel in futures.items() if f.exception() is not None
            ]
            deleted = sorted(rel for f, rel in futures.items() if f.exception() is None)
            if problems:
                bad_rel, bad_exc = problems[0]
                assert bad_exc is not None
                msg = (
                    f"Code sync to s3://{name}/{prefix}: all files uploaded, but {len(problems)} "
                    f"stale object(s) could not be deleted "
                    f"({bad_rel}: {_describe_error(bad_exc, name)})."
                )
                raise SyncError(
                    msg,
                    report=report(
                        uploaded=tuple(uploaded),
                        deleted=tuple(deleted),
                        failed=tuple(r for r, _ in problems),
                        bytes=sent,
                    ),
                ) from bad_exc
        return report(uploaded=tuple(sorted(uploaded)), deleted=tuple(deleted), bytes=sent)


def _safe_folder(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return cleaned or "code"


def _upload_all(  # noqa: PLR0917
    client: Any,
    bucket: str,
    folder: str,
    files: Sequence[_LocalFile],
    pool: ThreadPoolExecutor,
    threshold: int,
    advance: Callable[[int], None],
) -> tuple[list[str], list[str], list[str], list[BaseException]]:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=threshold,
        multipart_chunksize=max(threshold, _MIN_PART),
        use_threads=False,
    )
    stop = threading.Event()

    def upload(f: _LocalFile) -> str:
        if stop.is_set():
            raise _NotAttempted
        key = _key(folder, f.rel)
        meta = {SHA256_METADATA_KEY: f.sha256}
        try:
            if f.size < threshold:
                with f.path.open("rb") as fh:
                    client.put_object(Bucket=bucket, Key=key, Body=fh, Metadata=meta)
            else:
                client.upload_file(
                    str(f.path), bucket, key, ExtraArgs={"Metadata": meta}, Config=config
                )
        except BaseException:
            stop.set()
            raise
        advance(f.size)
        return f.rel

    futures: dict[Future[str], str] = {pool.submit(upload, f): f.rel for f in files}
    wait(futures, return_when=FIRST_EXCEPTION)
    wait(futures)
    uploaded: list[str] = []
    failed: list[str] = []
    pending: list[str] = []
    errors: list[BaseException] = []
    for fut, rel in futures.items():
        exc = fut.exception()
        if exc is None:
            uploaded.append(rel)
        elif isinstance(exc, _NotAttempted):
            pending.append(rel)
        else:
            failed.append(rel)
            errors.append(exc)
    return sorted(uploaded), sorted(failed), sorted(pending), errors


class _NotAttempted(Exception):
    pass


# ----------------------------------------------------------------------------- pull step


def _credentials_from(value: Any) -> AwsCredentials | None:
    if value is None:
        return None
    prefect_aws = require("prefect_aws", "aws")
    if isinstance(value, prefect_aws.AwsCredentials):
        given: AwsCredentials = value
        return given
    if isinstance(value, Mapping):
        creds: AwsCredentials = prefect_aws.AwsCredentials(**dict(value))
        return creds
    msg = (
        "pull_code: credentials must be an AwsCredentials block or its fields, "
        f"got {type(value).__name__}"
    )
    raise ConfigError(msg)


def _load_bucket_block(block: str) -> S3Bucket:
    prefect_aws = require("prefect_aws", "aws")
    name = block.split("/", 1)[1] if block.startswith("s3-bucket/") else block
    try:
        loaded: S3Bucket = prefect_aws.S3Bucket.load(name, _sync=True)
    except ValueError as exc:
        msg = (
            f"pull_code: storage block 's3-bucket/{name}' was not found; "
            "deploy again or create it with ensure_block()"
        )
        raise BlockError(msg) from exc
    return loaded


def pull_code(
    bucket: str | None = None,
    folder: str | None = None,
    *,
    block: str | None = None,
    credentials: Any = None,
    directory: str | None = None,
    delete: bool = True,
    max_concurrency: int = 8,
) -> dict[str, Any]:
    """Pull-step: download code from S3 into a directory, fetching only what changed.

    Files pulled earlier and no longer in S3 are removed (tracked in ``.oxeo-flows-pull.json``
    in the directory, so files this step did not create are never touched). Use it in a
    deployment's ``pull`` section as ``oxeo_flows.steps.pull_code``.

    Args:
        bucket: Bucket name (or give ``block``).
        folder: Key prefix.
        block: Name of a saved `S3Bucket` block (``"name"`` or ``"s3-bucket/name"``); its bucket,
            folder and credentials are used when ``bucket`` is not given.
        credentials: An `AwsCredentials` block or its fields (e.g. from
            ``{{ prefect.blocks.aws-credentials.NAME }}``); default: boto3's own chain.
        directory: Destination (default: the working directory).
        delete: Remove previously pulled files that are gone from S3.
        max_concurrency: Parallel downloads.

    Returns:
        ``{"bucket", "folder", "directory", "downloaded", "deleted", "skipped"}``; Prefect changes
        the working directory to ``directory`` before loading the flow.

    Raises:
        ConfigError: Neither bucket nor block given, or invalid values.
        BlockError: The block does not exist.
        StorageError: S3 could not be read.

    Example:
        ```yaml
        pull:
          - oxeo_flows.steps.pull_code:
              block: oxeo-code
        ```
    """
    creds = _credentials_from(credentials)
    if bucket is None:
        if block is None:
            msg = "pull_code needs bucket= or block= (the name of a saved S3Bucket block)"
            raise ConfigError(msg)
        loaded = _load_bucket_block(block)
        bucket = loaded.bucket_name
        folder = loaded.bucket_folder if folder is None else folder
        if creds is None and isinstance(
            loaded.credentials, require("prefect_aws", "aws").AwsCredentials
        ):
            creds = loaded.credentials
    name = check_bucket_name(bucket, where="pull_code bucket")
    prefix = check_folder(folder, where="pull_code folder")
    dest = Path(directory).resolve() if directory else Path.cwd()
    dest.mkdir(parents=True, exist_ok=True)
    client = _make_client(creds, max_concurrency)
    report = _pull(client, name, prefix, dest, delete=delete, workers=max_concurrency)
    return {
        "bucket": name,
        "folder": prefix,
        "directory": str(dest),
        "downloaded": len(report.uploaded),
        "deleted": len(report.deleted),
        "skipped": len(report.skipped),
    }


def _pull(
    client: Any, bucket: str, folder: str, dest: Path, *, delete: bool, workers: int
) -> SyncReport:
    started = time.perf_counter()
    state_file = dest / PULL_STATE_FILE
    previous: list[str] = []
    if state_file.is_file():
        with contextlib.suppress(ValueError, OSError):
            loaded = json.loads(state_file.read_text(encoding="utf-8"))
            previous = [p for p in loaded.get("files", []) if isinstance(p, str)]
    with _Counter(client) as counter, ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            remote = _list_remote(client, bucket, folder)
        except Exception as exc:
            if not _is_sdk_error(exc):
                raise
            msg = f"Cannot list s3://{bucket}/{folder}: {_describe_error(exc, bucket)}"
            raise StorageError(msg) from exc
        for rel in remote:
            _safe_target(dest, rel)

        def needed(rel: str) -> bool:
            target = dest / rel
            if not target.is_file():
                return True
            md5, sha, size = _hash_file(target)
            f = _LocalFile(rel, target, size, md5, sha)
            return not _same(client, bucket, _key(folder, rel), f, remote[rel])

        def fetch(rel: str) -> int:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.oxeo-part")
            client.download_file(bucket, _key(folder, rel), str(tmp))
            tmp.replace(target)
            return remote[rel].size

        try:
            rels = sorted(remote)
            flags = list(pool.map(needed, rels))
            todo = [r for r, n in zip(rels, flags, strict=True) if n]
            sizes = list(pool.map(fetch, todo))
        except Exception as exc:
            if not _is_sdk_error(exc):
                raise
            msg = (
                f"Cannot download code from s3://{bucket}/{folder}: {_describe_error(exc, bucket)}"
            )
            raise StorageError(msg) from exc
        removed: list[str] = []
        if delete:
            for rel in previous:
                if rel in remote:
                    continue
                target = dest / rel
                if dest.resolve() not in target.resolve().parents:
                    continue
                if target.is_file():
                    target.unlink()
                    removed.append(rel)
                    _prune_empty(target.parent, dest)
        state_file.write_text(
            json.dumps({"bucket": bucket, "folder": folder, "files": rels}), encoding="utf-8"
        )
        return SyncReport(
            bucket=bucket,
            folder=folder,
            uploaded=tuple(todo),
            skipped=tuple(r for r in rels if r not in set(todo)),
            deleted=tuple(removed),
            bytes=sum(sizes),
            seconds=time.perf_counter() - started,
            requests=dict(counter.counts),
        )


def _safe_target(dest: Path, rel: str) -> Path:
    target = (dest / rel).resolve()
    if dest.resolve() not in target.parents:
        msg = f"refusing to write {rel!r} outside {dest}"
        raise StorageError(msg)
    return target


def _prune_empty(directory: Path, root: Path) -> None:
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def iter_remote_keys(client: Any, bucket: str, folder: str) -> Iterator[str]:
    """Yield the relative paths stored under ``folder`` (used by the CLI and tests)."""
    yield from sorted(_list_remote(client, bucket, folder))
