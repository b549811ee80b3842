"""`sync_code`: upload a project directory to S3, sending only new or changed files.

prefect-aws's ``push_to_s3`` / ``S3Bucket.put_directory`` upload every file on every deploy and
never remove stale objects. `sync_code` uploads only new or changed files and deletes remote
objects whose local file is gone.

How files are compared (no local state, no manifest object):

* a single-part object's ETag is the MD5 of its content, so a listing (``ListObjectsV2``) is
  enough to know that a local file is unchanged;
* a multipart object's ETag is not an MD5 (it ends in ``-<parts>``), so every upload also stores
  our own SHA-256 in the object's metadata (``x-amz-meta-oxeo-sha256``), read with one
  ``HeadObject`` when the sizes match.

An unchanged re-sync therefore costs one ``ListObjectsV2`` call per 1,000 objects and no upload.
Neither Prefect nor prefect-aws is imported unless a credentials block is given.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oxeo_flows.errors import ConfigError, SyncError
from oxeo_flows.storage.files import DigestCache, LocalFile, code_files, scan, tree_digest
from oxeo_flows.storage.names import resolve_target, safe_folder, unpack_bucket
from oxeo_flows.storage.report import SyncReport
from oxeo_flows.storage.s3 import (
    SHA256_METADATA_KEY,
    CallCounter,
    describe_error,
    list_remote,
    make_client,
    map_s3_errors,
    object_key,
    same_content,
)

if TYPE_CHECKING:
    from prefect_aws import AwsCredentials, S3Bucket

    from oxeo_flows.stack import Stack

__all__ = ["sync_code"]

_DEFAULT_MULTIPART_THRESHOLD = 8 * 1024 * 1024
_MIN_PART = 5 * 1024 * 1024


@dataclass
class _Plan:
    """A sync's resolved settings and what it found."""

    bucket: str
    folder: str
    root: Path
    rels: list[str]
    delete: bool
    workers: int
    threshold: int
    client: Any
    dry_run: bool
    show: bool
    started: float = field(default_factory=time.perf_counter)
    digest: str = ""
    to_upload: list[LocalFile] = field(default_factory=list)
    skipped: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    counter: CallCounter | None = None

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.folder}"

    def report(self, **kw: Any) -> SyncReport:
        base: dict[str, Any] = {
            "bucket": self.bucket,
            "folder": self.folder,
            "skipped": self.skipped,
            "seconds": time.perf_counter() - self.started,
            "dry_run": self.dry_run,
            "digest": self.digest,
            "requests": dict(self.counter.counts) if self.counter else {},
        }
        base.update(kw)
        return SyncReport(**base)


def sync_code(
    src: str | os.PathLike[str] = ".",
    *,
    bucket: str | S3Bucket | None = None,
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
        bucket: Bucket name or an `S3Bucket` block (its folder and credentials are used unless
            given; default: ``storage.bucket`` of the stack).
        folder: Key prefix (default: ``storage.folder``, else the name of ``src``).
        delete: Delete stale remote objects (default: ``storage.delete``, true).
        dry_run: Compare only; upload and delete nothing.
        stack: The stack to read: a `Stack`, a stack name, or None for the active stack.
        credentials: A prefect-aws credentials block (default: boto3 with the stack's
            ``aws.profile``, ``aws.region`` and ``aws.endpoint-url``).
        client: A boto3 S3 client to use instead (tests, custom sessions).
        ignore: Extra gitignore-style patterns.
        max_concurrency: Parallel transfers (default: ``storage.max-concurrency``, 8).
        multipart_threshold: Files at least this large are uploaded in parts (default 8 MiB;
            at least 5 MiB, S3's minimum part size).
        progress: Show a progress bar (default: only when stderr is a terminal).

    Returns:
        A `SyncReport`.

    Raises:
        ConfigError: Missing or invalid bucket / folder, ``src`` is empty or not a directory,
            or a symlink in it points outside it.
        SyncError: An upload or delete failed; ``exc.report`` lists what was uploaded, what
            failed and what was not attempted. Nothing is deleted when an upload failed.
        StorageError: The bucket could not be listed, or a file could not be read.

    Example:
        ```python
        from oxeo_flows import sync_code

        report = sync_code(".", bucket="oxeo-flow-code", folder="pipelines")
        print(report.summary())
        ```
    """
    from oxeo_flows.stack import resolve_stack

    plan = _plan(
        src,
        resolve_stack(stack),
        unpack_bucket(bucket, folder, credentials, where="sync_code"),
        delete=delete,
        options=(max_concurrency, multipart_threshold, ignore, client, progress, dry_run),
    )
    with CallCounter(plan.client) as counter, ThreadPoolExecutor(plan.workers) as pool:
        plan.counter = counter
        _compare(plan, pool)
        if dry_run:
            return plan.report(
                uploaded=tuple(f.rel for f in plan.to_upload),
                deleted=plan.stale,
                bytes=sum(f.digest.size for f in plan.to_upload),
            )
        uploaded, sent = _upload(plan, pool)
        deleted = _delete_stale(plan, pool, uploaded, sent)
        return plan.report(uploaded=tuple(sorted(uploaded)), deleted=tuple(deleted), bytes=sent)


def _plan(
    src: str | os.PathLike[str],
    stack: Stack,
    target: Any,
    *,
    delete: bool | None,
    options: tuple[Any, ...],
) -> _Plan:
    max_concurrency, multipart_threshold, ignore, client, progress, dry_run = options
    rels = code_files(src, ignore=(*stack.storage.ignore, *ignore))
    root = Path(src).resolve()
    name, prefix = resolve_target(
        stack, target.bucket, target.folder, default_folder=safe_folder(root.name)
    )
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
    if client is None:
        client = make_client(target.credentials, workers, stack=stack)
    return _Plan(
        bucket=name,
        folder=prefix,
        root=root,
        rels=rels,
        delete=stack.storage.delete if delete is None else delete,
        workers=workers,
        threshold=threshold,
        client=client,
        dry_run=dry_run,
        show=sys.stderr.isatty() if progress is None else progress,
    )


def _compare(plan: _Plan, pool: ThreadPoolExecutor) -> None:
    """Hash the tree, list the folder, and split the files into upload / skip / stale."""
    # The listing waits on the network while the tree is hashed: start it first.
    listing = pool.submit(list_remote, plan.client, plan.bucket, plan.folder)
    local = scan(plan.root, plan.rels, pool, DigestCache(plan.root))
    plan.digest = tree_digest(local)
    with map_s3_errors(f"Cannot list {plan.where}", plan.bucket):
        remote = listing.result()

    def same(f: LocalFile) -> bool:
        key = object_key(plan.folder, f.rel)
        return same_content(plan.client, plan.bucket, key, f.digest.as_tuple(), remote.get(f.rel))

    with map_s3_errors(f"Cannot read {plan.where}", plan.bucket):
        flags = list(pool.map(same, local))
    plan.to_upload = [f for f, s in zip(local, flags, strict=True) if not s]
    plan.skipped = tuple(f.rel for f, s in zip(local, flags, strict=True) if s)
    local_rels = {f.rel for f in local}
    plan.stale = tuple(sorted(r for r in remote if r not in local_rels)) if plan.delete else ()


def _upload(plan: _Plan, pool: ThreadPoolExecutor) -> tuple[list[str], int]:
    """Upload what changed; on any failure raise a `SyncError` (nothing is deleted then)."""
    bar = _Progress(plan.show, sum(f.digest.size for f in plan.to_upload), plan.where)
    try:
        uploaded, failed, pending, errors = _upload_all(plan, pool, bar.advance)
    finally:
        bar.close()
    done = set(uploaded)
    sent = sum(f.digest.size for f in plan.to_upload if f.rel in done)
    if failed:
        first = errors[0]
        msg = (
            f"Code sync to {plan.where} failed: {len(uploaded)} file(s) uploaded, "
            f"{len(failed)} failed ({failed[0]}: {describe_error(first, plan.bucket)}), "
            f"{len(pending)} not attempted; nothing was deleted. Fix the cause and sync again "
            "(already uploaded files will be skipped)."
        )
        report = plan.report(
            uploaded=tuple(uploaded), failed=tuple(failed), pending=tuple(pending), bytes=sent
        )
        raise SyncError(msg, report=report) from first
    return uploaded, sent


def _delete_stale(
    plan: _Plan, pool: ThreadPoolExecutor, uploaded: list[str], sent: int
) -> list[str]:
    """Delete the stale objects; raise a `SyncError` listing those that could not be."""
    if not plan.stale:
        return []
    futures = {
        pool.submit(
            plan.client.delete_object, Bucket=plan.bucket, Key=object_key(plan.folder, rel)
        ): rel
        for rel in plan.stale
    }
    wait(futures)
    problems = [(rel, f.exception()) for f, rel in futures.items() if f.exception() is not None]
    deleted = sorted(rel for f, rel in futures.items() if f.exception() is None)
    if problems:
        bad_rel, bad_exc = problems[0]
        assert bad_exc is not None
        msg = (
            f"Code sync to {plan.where}: all files uploaded, but {len(problems)} "
            f"stale object(s) could not be deleted "
            f"({bad_rel}: {describe_error(bad_exc, plan.bucket)})."
        )
        report = plan.report(
            uploaded=tuple(uploaded),
            deleted=tuple(deleted),
            failed=tuple(r for r, _ in problems),
            bytes=sent,
        )
        raise SyncError(msg, report=report) from bad_exc
    return deleted


def _upload_all(
    plan: _Plan, pool: ThreadPoolExecutor, advance: Callable[[int], None]
) -> tuple[list[str], list[str], list[str], list[BaseException]]:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=plan.threshold,
        multipart_chunksize=max(plan.threshold, _MIN_PART),
        use_threads=False,
    )
    stop = threading.Event()

    def upload(f: LocalFile) -> str:
        if stop.is_set():
            raise _NotAttempted
        key = object_key(plan.folder, f.rel)
        meta = {SHA256_METADATA_KEY: f.digest.sha256}
        try:
            if f.digest.size < plan.threshold:
                with f.path.open("rb") as fh:
                    plan.client.put_object(Bucket=plan.bucket, Key=key, Body=fh, Metadata=meta)
            else:
                plan.client.upload_file(
                    str(f.path), plan.bucket, key, ExtraArgs={"Metadata": meta}, Config=config
                )
        except BaseException:
            stop.set()
            raise
        advance(f.digest.size)
        return f.rel

    futures: dict[Future[str], str] = {pool.submit(upload, f): f.rel for f in plan.to_upload}
    wait(futures, return_when=FIRST_EXCEPTION)
    wait(futures)
    return _outcomes(futures)


def _outcomes(
    futures: dict[Future[str], str],
) -> tuple[list[str], list[str], list[str], list[BaseException]]:
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
