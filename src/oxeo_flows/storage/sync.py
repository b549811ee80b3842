"""`sync_code`: publish a project directory to S3 as one complete tree, sending only new content.

prefect-aws's ``push_to_s3`` / ``S3Bucket.put_directory`` upload every file on every deploy,
never remove stale objects, and let a run pull a half-written folder. `sync_code` stores file
contents once each, by SHA-256, and publishes a tree by switching one pointer object after
everything it references is in place (the layout: `oxeo_flows.storage.layout`):

* unchanged tree: one ``GetObject`` of the pointer (its tree digest equals the local one), no
  upload;
* changed tree: the pointer and its manifest are read, the objects listed (one call per 1,000),
  only contents not stored yet are uploaded, then the new manifest is written and the pointer
  replaced with a conditional ``PutObject``; trees replaced long enough ago, and objects no kept
  tree references, are garbage-collected (`oxeo_flows.storage.gc`);
* interrupted (an error, Ctrl-C, SIGTERM, SIGKILL): the pointer is not switched, so pulls keep
  getting the previous complete tree; the next sync reuses what was uploaded;
* two syncs racing: the first to switch the pointer wins whole, the other gets a `SyncError`.

Neither Prefect nor prefect-aws is imported unless a credentials block is given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oxeo_flows.errors import ConfigError, StorageError, SyncError
from oxeo_flows.storage.files import DigestCache, LocalFile, code_files, file_digest, scan
from oxeo_flows.storage.gc import collect
from oxeo_flows.storage.layout import (
    STORE,
    Entry,
    Head,
    Lost,
    Manifest,
    digest_of,
    objects_prefix,
    publish,
    read_head,
    read_manifest,
    write_manifest,
)
from oxeo_flows.storage.names import resolve_target, safe_folder, unpack_bucket
from oxeo_flows.storage.report import SyncReport
from oxeo_flows.storage.s3 import (
    CallCounter,
    Stamped,
    delete_keys,
    describe_error,
    list_stamped,
    make_client,
    map_s3_errors,
    object_key,
)

if TYPE_CHECKING:
    from prefect_aws import AwsCredentials, S3Bucket

    from oxeo_flows.stack import Stack
    from oxeo_flows.storage.settings import StackView

__all__ = ["DEFAULT_GC_GRACE", "sync_code", "sync_with"]

_DEFAULT_MULTIPART_THRESHOLD = 8 * 1024 * 1024
_MIN_PART = 5 * 1024 * 1024
#: Seconds a replaced tree and an unreferenced object are kept before garbage collection.
DEFAULT_GC_GRACE = 3600.0
_log = logging.getLogger("oxeo_flows.storage")


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
    grace: float = DEFAULT_GC_GRACE
    started: float = field(default_factory=time.perf_counter)
    counter: CallCounter | None = None

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.folder}".rstrip("/")

    def report(self, **kw: Any) -> SyncReport:
        base: dict[str, Any] = {
            "bucket": self.bucket,
            "folder": self.folder,
            "seconds": time.perf_counter() - self.started,
            "dry_run": self.dry_run,
            "requests": dict(self.counter.counts) if self.counter else {},
        }
        base.update(kw)
        return SyncReport(**base)


@dataclass
class _State:
    """What the comparison found: the remote tree, the new one, and what must be sent."""

    local: list[LocalFile]
    head: Head | None = None
    current: Manifest | None = None
    manifest: Manifest | None = None
    stored: dict[str, Stamped] = field(default_factory=dict)
    listed: float = 0.0
    to_upload: list[LocalFile] = field(default_factory=list)
    changed: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    legacy: tuple[str, ...] = ()

    @property
    def tree(self) -> str:
        assert self.manifest is not None
        return self.manifest.tree


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
    gc_grace: float = DEFAULT_GC_GRACE,
) -> SyncReport:
    """Publish a project directory to S3 as one complete tree, uploading only new content.

    Pulls (`pull_code`) see the previous complete tree until every file of the new one is
    stored, then the new one: never a mix. Files removed locally leave the published tree
    (unless ``delete=False``). Ignored: ``.gitignore`` / ``.prefectignore`` patterns in ``src``,
    ``storage.ignore`` and ``ignore``, and always `DEFAULT_IGNORES` and virtualenvs.

    Args:
        src: The project directory.
        bucket: Bucket name or an `S3Bucket` block (its folder and credentials are used unless
            given; default: ``storage.bucket`` of the stack).
        folder: Key prefix (default: ``storage.folder``, else the name of ``src``).
        delete: Drop files from the tree whose local file is gone (default: ``storage.delete``,
            true); with False the published tree keeps them.
        dry_run: Compare only; upload and publish nothing.
        stack: The stack to read: a `Stack`, a stack name, or None for the active stack.
        credentials: A prefect-aws credentials block (default: boto3 with the stack's
            ``aws.profile``, ``aws.region`` and ``aws.endpoint-url``).
        client: A boto3 S3 client to use instead (tests, custom sessions).
        ignore: Extra gitignore-style patterns.
        max_concurrency: Parallel transfers (default: ``storage.max-concurrency``, 8).
        multipart_threshold: Files at least this large are uploaded in parts (default 8 MiB;
            at least 5 MiB, S3's minimum part size).
        progress: Show a progress bar (default: only when stderr is a terminal).
        gc_grace: Seconds a replaced tree, and an object no tree references, are kept before
            garbage collection deletes them (default one hour); must exceed your longest pull.

    Returns:
        A `SyncReport`: ``uploaded`` are the paths new or changed in the published tree,
        ``deleted`` the paths it no longer has, ``digest`` its tree digest.

    Raises:
        ConfigError: Missing or invalid bucket / folder, ``src`` is empty or not a directory,
            or a symlink in it points outside it.
        SyncError: An upload failed, a file changed while it was sent, or another sync to the
            folder published first; nothing was published, and ``exc.report`` lists what was
            uploaded, what failed and what was not attempted.
        StorageError: The bucket could not be read, or a file could not be read.
        KeyboardInterrupt: Interrupted; pending uploads were cancelled, nothing was
            published, and the exception carries the same ``report`` attribute.

    Example:
        ```python
        from oxeo_flows import sync_code

        report = sync_code(".", bucket="oxeo-flow-code", folder="pipelines")
        print(report.summary())
        ```
    """
    from oxeo_flows.stack import resolve_stack

    return sync_with(
        resolve_stack(stack),
        src,
        bucket=bucket,
        folder=folder,
        delete=delete,
        dry_run=dry_run,
        credentials=credentials,
        client=client,
        ignore=ignore,
        max_concurrency=max_concurrency,
        multipart_threshold=multipart_threshold,
        progress=progress,
        gc_grace=gc_grace,
    )


def sync_with(
    stack: Stack | StackView,
    src: str | os.PathLike[str] = ".",
    *,
    bucket: str | S3Bucket | None = None,
    folder: str | None = None,
    delete: bool | None = None,
    dry_run: bool = False,
    credentials: AwsCredentials | None = None,
    client: Any = None,
    ignore: Sequence[str] = (),
    max_concurrency: int | None = None,
    multipart_threshold: int | None = None,
    progress: bool | None = None,
    gc_grace: float = DEFAULT_GC_GRACE,
) -> SyncReport:
    """`sync_code` with a stack already resolved (a `StackView` from the command line's cache)."""
    plan = _plan(
        src,
        stack,
        unpack_bucket(bucket, folder, credentials, where="sync_code"),
        delete=delete,
        options=(max_concurrency, multipart_threshold, ignore, client, progress, dry_run),
    )
    plan.grace = float(gc_grace)
    with CallCounter(plan.client) as counter, _executor(plan.workers) as pool:
        plan.counter = counter
        state = _compare(plan, pool)
        if state.manifest is None or dry_run:
            return _final(plan, state, sent=0)
        sent = _upload(plan, pool, state)
        head = _publish(plan, state, sent)
        deleted = _finish(plan, state, head)
        return _final(plan, state, sent=sent, collected=deleted)


@contextlib.contextmanager
def _executor(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A thread pool that, on the way out, cancels what has not started (Ctrl-C included)."""
    pool = ThreadPoolExecutor(workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _plan(
    src: str | os.PathLike[str],
    stack: Stack | StackView,
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


def _final(plan: _Plan, state: _State, *, sent: int, collected: int = 0) -> SyncReport:
    tree = state.manifest.tree if state.manifest else (state.head.tree if state.head else "")
    if state.manifest is None:  # unchanged
        return plan.report(skipped=tuple(f.rel for f in state.local), digest=tree)
    return plan.report(
        uploaded=state.changed,
        skipped=state.skipped,
        deleted=state.removed,
        bytes=sent if not plan.dry_run else sum(f.digest.size for f in state.to_upload),
        digest=tree,
        collected=collected,
    )


def _compare(plan: _Plan, pool: ThreadPoolExecutor) -> _State:
    """Hash the tree and read the published one; decide what to upload.

    Leaves ``state.manifest`` None when the published tree already is the local one.
    """
    # The pointer is read while the tree is hashed: start it first.
    reading = pool.submit(read_head, plan.client, plan.bucket, plan.folder)
    state = _State(local=scan(plan.root, plan.rels, pool, DigestCache(plan.root)))
    files = {f.rel: Entry(f.digest.sha256, f.digest.size) for f in state.local}
    with map_s3_errors(f"Cannot read {plan.where}", plan.bucket):
        state.head = reading.result()
        if state.head is not None and plan.delete and state.head.tree == digest_of(files):
            return state  # the no-op: one request
        _read_remote(plan, state, files)
    return state


def _read_remote(plan: _Plan, state: _State, files: dict[str, Entry]) -> None:
    head = state.head
    if head is not None:
        state.current = read_manifest(plan.client, plan.bucket, plan.folder, head.tree)
        stored, state.listed = list_stamped(plan.client, plan.bucket, objects_prefix(plan.folder))
    else:  # first sync in this layout: list the whole folder (0.2.0's per-path objects too)
        listed, state.listed = list_stamped(
            plan.client, plan.bucket, object_key(plan.folder, "") if plan.folder else ""
        )
        inner = f"{STORE}/objects/"
        stored = {k.removeprefix(inner): v for k, v in listed.items() if k.startswith(inner)}
        state.legacy = tuple(sorted(k for k in listed if not k.startswith(f"{STORE}/")))
    current = state.current.files if state.current else {}
    if not plan.delete:
        for rel, entry in current.items():
            if entry.sha256 in stored:
                files.setdefault(rel, entry)
    manifest = Manifest.of(files)
    if head is not None and head.tree == manifest.tree:
        return
    state.manifest = manifest
    state.stored = stored
    # An object is reused when the published tree references it (kept by the garbage
    # collection for the grace period after any switch), or when it is young enough that no
    # collection can remove it before this sync publishes (an interrupted sync's uploads).
    referenced = state.current.shas() if state.current else set()
    usable = {
        sha
        for sha, st in stored.items()
        if sha in referenced or state.listed - st.modified < plan.grace / 2
    }
    sizes = {e.sha256: e.size for e in files.values()}
    usable = {sha for sha in usable if stored[sha].size == sizes.get(sha)}
    seen: set[str] = set()
    for f in state.local:
        sha = f.digest.sha256
        if sha not in usable and sha not in seen:
            seen.add(sha)
            state.to_upload.append(f)
    state.changed = tuple(r for r in sorted(files) if current.get(r) != files[r])
    state.skipped = tuple(r for r in sorted(files) if current.get(r) == files[r])
    gone = [r for r in current if r not in files]
    if plan.delete:
        gone.extend(state.legacy)
    state.removed = tuple(sorted(gone))


def _upload(plan: _Plan, pool: ThreadPoolExecutor, state: _State) -> int:
    """Upload the missing contents; on failure or interrupt nothing is published."""
    bar = _Progress(plan.show, sum(f.digest.size for f in state.to_upload), plan.where)
    try:
        futures = _submit(plan, pool, state.to_upload, bar.advance)
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException as exc:  # Ctrl-C / SIGTERM turned into KeyboardInterrupt
            for fut in futures:
                fut.cancel()
            wait(futures)
            report = _failure_report(plan, state, futures)
            exc.add_note(
                f"Code sync to {plan.where} interrupted; nothing was published: {_counts(report)}"
            )
            exc.report = report  # type: ignore[attr-defined]
            raise
        for fut in futures:
            fut.cancel()
        wait(futures)
    finally:
        bar.close()
    report = _failure_report(plan, state, futures)
    if report.failed:
        first = next(
            error
            for fut, f in futures.items()
            if f.rel == report.failed[0] and (error := fut.exception()) is not None
        )
        msg = (
            f"Code sync to {plan.where} failed: {_counts(report)} ({report.failed[0]}: "
            f"{describe_error(first, plan.bucket)}). Nothing was published: pulls still get "
            "the previous tree. Fix the cause and sync again (uploaded files are reused)."
        )
        raise SyncError(msg, report=report) from first
    return report.bytes


def _counts(report: SyncReport) -> str:
    return (
        f"{len(report.uploaded)} file(s) uploaded, {len(report.failed)} failed, "
        f"{len(report.pending)} not attempted"
    )


def _failure_report(
    plan: _Plan, state: _State, futures: dict[Future[int], LocalFile]
) -> SyncReport:
    uploaded: list[str] = []
    failed: list[str] = []
    pending: list[str] = []
    sent = 0
    for fut, f in futures.items():
        if fut.cancelled():
            pending.append(f.rel)
        elif fut.exception() is None:
            uploaded.append(f.rel)
            sent += f.digest.size
        elif isinstance(fut.exception(), _NotAttempted):
            pending.append(f.rel)
        else:
            failed.append(f.rel)
    return plan.report(
        uploaded=tuple(sorted(uploaded)),
        failed=tuple(sorted(failed)),
        pending=tuple(sorted(pending)),
        bytes=sent,
        digest=state.tree,
    )


def _submit(
    plan: _Plan, pool: ThreadPoolExecutor, todo: list[LocalFile], advance: Callable[[int], None]
) -> dict[Future[int], LocalFile]:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=plan.threshold,
        multipart_chunksize=max(plan.threshold, _MIN_PART),
        use_threads=False,
    )
    stop = threading.Event()
    prefix = objects_prefix(plan.folder)

    def upload(f: LocalFile) -> int:
        if stop.is_set():
            raise _NotAttempted
        key = prefix + f.digest.sha256
        try:
            if f.digest.size < plan.threshold:
                data = _read_exact(f)
                plan.client.put_object(Bucket=plan.bucket, Key=key, Body=data)
            else:
                before = _stamp(f.path)
                plan.client.upload_file(str(f.path), plan.bucket, key, Config=config)
                if _stamp(f.path) != before:
                    plan.client.delete_object(Bucket=plan.bucket, Key=key)
                    raise _changed(f)
        except BaseException:
            stop.set()
            raise
        advance(f.digest.size)
        return f.digest.size

    return {pool.submit(upload, f): f for f in todo}


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _read_exact(f: LocalFile) -> bytes:
    """The file's bytes, checked against the digest it is stored under."""
    import hashlib

    try:
        data = f.path.read_bytes()
    except OSError:
        file_digest(f.path)  # raises the StorageError naming the file
        raise
    if hashlib.sha256(data).hexdigest() != f.digest.sha256:
        raise _changed(f)
    return data


def _changed(f: LocalFile) -> StorageError:
    msg = f"{f.rel!r} changed while it was being synced; sync again once it is written"
    return StorageError(msg)


def _publish(plan: _Plan, state: _State, sent: int) -> Head:
    """Write the manifest and switch the pointer to it, if no other sync did first."""
    assert state.manifest is not None
    with map_s3_errors(f"Cannot publish the tree to {plan.where}", plan.bucket):
        now = write_manifest(plan.client, plan.bucket, plan.folder, state.manifest)
        if plan.grace > 0 and now - state.listed > plan.grace / 2:
            msg = (
                f"Code sync to {plan.where} took longer than half the garbage-collection grace "
                f"({plan.grace:.0f} s): objects it reuses may have been collected meanwhile, so "
                "it did not publish. Sync again (what was uploaded is reused)."
            )
            raise SyncError(msg, report=plan.report(uploaded=state.changed, bytes=sent))
        try:
            return publish(
                plan.client, plan.bucket, plan.folder, state.tree, previous=state.head, now=now
            )
        except Lost as lost:
            if lost.tree == state.tree:  # the other sync published this very tree
                found = read_head(plan.client, plan.bucket, plan.folder)
                assert found is not None
                return found
            other = (lost.tree or "none")[:12]
            msg = (
                f"Another sync to {plan.where} published tree {other} while this one ran; "
                f"this tree ({state.tree[:12]}) was NOT published and the folder holds the "
                "other sync's complete tree. Sync again to publish yours (what was uploaded "
                "is reused)."
            )
            report = plan.report(uploaded=state.changed, bytes=sent, digest=state.tree)
            raise SyncError(msg, report=report) from None


def _finish(plan: _Plan, state: _State, head: Head) -> int:
    """After publishing: remove 0.2.0's per-path objects, collect garbage (best effort)."""
    keys: list[str] = []
    try:
        with map_s3_errors(f"Cannot clean up {plan.where}", plan.bucket):
            if state.legacy and plan.delete:
                legacy = [object_key(plan.folder, r) for r in state.legacy]
                failed = set(delete_keys(plan.client, plan.bucket, legacy))
                keys.extend(k for k in legacy if k not in failed)
            known = {state.tree: state.manifest}
            if state.current is not None:
                known[state.current.tree] = state.current
            keys.extend(
                collect(
                    plan.client,
                    plan.bucket,
                    plan.folder,
                    head,
                    {k: v for k, v in known.items() if v is not None},
                    state.stored,
                    plan.grace,
                )
            )
    except StorageError as exc:  # published already: a failed clean-up is not a failed sync
        _log.warning("%s (the tree was published; the next sync retries)", exc)
    return len(keys)


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
