"""`pull_code`: the run-time step that downloads only what changed into the working directory.

It reads the pointer of the folder (`oxeo_flows.storage.layout`), then that tree's manifest,
and fetches the objects of the files whose local content differs: always one complete tree.
If the garbage collection removed an object of the tree meanwhile (the tree was replaced more
than the grace period ago), the pull starts over from the new pointer. A folder synced by
oxeo-flows 0.2.0 (one object per path, no pointer) is still pulled, with a warning to sync it
again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oxeo_flows._checks import check_bucket_name, check_folder
from oxeo_flows._extras import require
from oxeo_flows.errors import BlockError, ConfigError, StorageError
from oxeo_flows.storage.files import PULL_STATE_FILE, DigestCache, file_digest
from oxeo_flows.storage.layout import (
    STORE,
    Entry,
    Head,
    Manifest,
    objects_prefix,
    read_head,
    read_manifest,
)
from oxeo_flows.storage.names import Target, unpack_bucket
from oxeo_flows.storage.report import SyncReport
from oxeo_flows.storage.s3 import (
    MISSING_KEY_CODES,
    CallCounter,
    Remote,
    error_code,
    list_remote,
    make_client,
    map_s3_errors,
    object_key,
    same_content,
)

if TYPE_CHECKING:
    from prefect_aws import S3Bucket

    from oxeo_flows.stack import Stack
    from oxeo_flows.storage.settings import StackView

__all__ = ["iter_remote_keys", "pull_code", "pull_with"]

_log = logging.getLogger("oxeo_flows.storage")
_ATTEMPTS = 3


def pull_code(
    bucket: str | S3Bucket | None = None,
    folder: str | None = None,
    *,
    block: str | S3Bucket | None = None,
    credentials: Any = None,
    directory: str | None = None,
    delete: bool = True,
    max_concurrency: int = 8,
    stack: Stack | str | None = None,
) -> dict[str, Any]:
    """Pull-step: download code from S3 into a directory, fetching only what changed.

    The directory gets exactly the tree the folder's pointer names (the last complete
    `sync_code`), never a half-synced one. Files pulled earlier and no longer in the tree are
    removed (tracked in ``.oxeo-flows-pull.json`` in the directory, so files this step did
    not create are never touched). Use it in a deployment's ``pull`` section as
    ``oxeo_flows.steps.pull_code``.

    Args:
        bucket: Bucket name, or an `S3Bucket` block (or give ``block``).
        folder: Key prefix.
        block: A saved `S3Bucket` block's name (``"name"`` or ``"s3-bucket/name"``) or the block
            itself; its bucket, folder and credentials are used when ``bucket`` is not given.
        credentials: An `AwsCredentials` block or its fields (e.g. from
            ``{{ prefect.blocks.aws-credentials.NAME }}``); default: boto3's own chain.
        directory: Destination (default: the working directory).
        delete: Remove previously pulled files that are gone from S3.
        max_concurrency: Parallel downloads.
        stack: A `Stack`, a stack name, or None for the active stack; read only when it is
            given or when neither ``bucket`` nor ``block`` is: its ``storage.bucket`` /
            ``storage.folder`` are then the defaults and its ``[aws]`` section configures the
            client. Otherwise no stack is loaded and boto3's own credential chain is used.

    Returns:
        ``{"bucket", "folder", "directory", "downloaded", "deleted", "skipped", "tree"}``
        (``tree``: the digest of the tree pulled, ``""`` for a 0.2.0 folder); Prefect changes
        the working directory to ``directory`` before loading the flow.

    Raises:
        ConfigError: Neither bucket nor block given, or invalid values.
        BlockError: The block does not exist.
        StorageError: S3 could not be read, nothing was ever synced to the folder, or a local
            file could not be read or written.

    Example:
        ```yaml
        pull:
          - oxeo_flows.steps.pull_code:
              block: oxeo-code
        ```
    """
    the_stack = None
    if stack is not None or (bucket is None and block is None):
        from oxeo_flows.stack import resolve_stack

        the_stack = resolve_stack(stack)
    return pull_with(
        the_stack,
        bucket,
        folder,
        block=block,
        credentials=credentials,
        directory=directory,
        delete=delete,
        max_concurrency=max_concurrency,
    )


def pull_with(
    the_stack: Stack | StackView | None,
    bucket: str | S3Bucket | None = None,
    folder: str | None = None,
    *,
    block: str | S3Bucket | None = None,
    credentials: Any = None,
    directory: str | None = None,
    delete: bool = True,
    max_concurrency: int = 8,
) -> dict[str, Any]:
    """`pull_code` with the stack already resolved (or None: not needed)."""
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        msg = f"pull_code max_concurrency must be an integer, at least 1, got {max_concurrency!r}"
        raise ConfigError(msg)
    if max_concurrency < 1:
        msg = f"pull_code max_concurrency must be at least 1, got {max_concurrency}"
        raise ConfigError(msg)
    target = _target(bucket, folder, block, _credentials_from(credentials))
    if target.bucket is None and the_stack is not None and the_stack.storage.bucket:
        folder = target.folder if target.folder is not None else the_stack.storage.folder
        target = Target(the_stack.storage.bucket, folder, target.credentials)
    if target.bucket is None:
        msg = (
            "pull_code needs bucket= or block= (a saved S3Bucket block or its name), or a "
            "stack with storage.bucket"
        )
        raise ConfigError(msg)
    name = check_bucket_name(target.bucket, where="pull_code bucket")
    prefix = check_folder(target.folder, where="pull_code folder")
    dest = Path(directory).resolve() if directory else Path.cwd()
    with map_s3_errors(f"Cannot create {dest}", name):
        dest.mkdir(parents=True, exist_ok=True)
    client = make_client(target.credentials, max_concurrency, stack=the_stack)
    report = _pull(client, name, prefix, dest, delete=delete, workers=max_concurrency)
    return {
        "bucket": name,
        "folder": prefix,
        "directory": str(dest),
        "downloaded": len(report.uploaded),
        "deleted": len(report.deleted),
        "skipped": len(report.skipped),
        "tree": report.digest,
    }


def _target(bucket: Any, folder: str | None, block: Any, credentials: Any) -> Target:
    if bucket is None and block is not None:
        bucket = _load_bucket_block(block) if isinstance(block, str) else block
    return unpack_bucket(bucket, folder, credentials, where="pull_code")


def _credentials_from(value: Any) -> Any:
    if value is None or hasattr(value, "get_boto3_session"):
        return value
    if isinstance(value, Mapping):
        prefect_aws = require("prefect_aws", "aws")
        return prefect_aws.AwsCredentials(**dict(value))
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


def _read_state(dest: Path) -> list[str]:
    state_file = dest / PULL_STATE_FILE
    if not state_file.is_file():
        return []
    with contextlib.suppress(ValueError, OSError):
        loaded = json.loads(state_file.read_text(encoding="utf-8"))
        return [p for p in loaded.get("files", []) if isinstance(p, str)]
    return []


def _pull(
    client: Any, bucket: str, folder: str, dest: Path, *, delete: bool, workers: int
) -> SyncReport:
    where = f"s3://{bucket}/{folder}".rstrip("/")
    started = time.perf_counter()
    previous = _read_state(dest)
    with CallCounter(client) as counter, ThreadPoolExecutor(max_workers=workers) as pool:
        with map_s3_errors(f"Cannot read {where}", bucket):
            head = read_head(client, bucket, folder)
        if head is None:
            return _pull_legacy(client, bucket, folder, dest, delete=delete, pool=pool)
        with map_s3_errors(f"Cannot download code from {where}", bucket):
            manifest, todo, sizes = _pull_tree(client, bucket, folder, dest, head=head, pool=pool)
            removed = _remove_stale(dest, previous, manifest.files) if delete else []
            _write_state(dest, bucket, folder, sorted(manifest.files), manifest.tree)
        done = set(todo)
        return SyncReport(
            bucket=bucket,
            folder=folder,
            uploaded=tuple(todo),
            skipped=tuple(r for r in sorted(manifest.files) if r not in done),
            deleted=tuple(removed),
            bytes=sum(sizes),
            seconds=time.perf_counter() - started,
            digest=manifest.tree,
            requests=dict(counter.counts),
        )


class _Gone(Exception):
    """An object of the tree being pulled was removed (the tree was replaced meanwhile)."""


def _pull_tree(
    client: Any, bucket: str, folder: str, dest: Path, *, head: Head, pool: ThreadPoolExecutor
) -> tuple[Manifest, list[str], list[int]]:
    where = f"s3://{bucket}/{folder}".rstrip("/")
    for _ in range(_ATTEMPTS):
        manifest = read_manifest(client, bucket, folder, head.tree)
        try:
            if manifest is None:
                raise _Gone
            todo, sizes = _pull_once(client, bucket, folder, dest, manifest=manifest, pool=pool)
        except _Gone:
            newer = read_head(client, bucket, folder)
            if newer is None or newer.tree == head.tree:
                break
            _log.info("%s was re-synced during the pull; pulling the new tree", where)
            head = newer
        else:
            return manifest, todo, sizes
    msg = (
        f"Cannot download code from {where}: the tree {head.tree[:12]} its pointer names is "
        "incomplete (objects removed by hand, or the garbage-collection grace is shorter "
        "than this pull); sync again"
    )
    raise StorageError(msg)


def _pull_once(
    client: Any, bucket: str, folder: str, dest: Path, *, manifest: Manifest, pool: Any
) -> tuple[list[str], list[int]]:
    """Fetch the files of ``manifest`` whose local content differs; `_Gone` if one is gone."""
    for rel in manifest.files:
        _safe_target(dest, rel)
    cache = DigestCache(dest)
    entries = sorted(manifest.files.items())
    flags = list(pool.map(lambda item: _have(dest, cache, *item), entries))
    cache.save(dest)
    todo = [rel for (rel, _), have in zip(entries, flags, strict=True) if not have]

    def fetch(rel: str) -> int:
        return _fetch_object(client, bucket, folder, dest, rel, manifest.files)

    return todo, list(pool.map(fetch, todo))


def _have(dest: Path, cache: DigestCache, rel: str, entry: Entry) -> bool:
    target = dest / rel
    if not target.is_file():
        return False
    digest = cache.digest(target, rel)
    return digest.size == entry.size and digest.sha256 == entry.sha256


def _fetch_object(  # noqa: PLR0917 - a worker of pool.map
    client: Any, bucket: str, folder: str, dest: Path, rel: str, files: Mapping[str, Entry]
) -> int:
    entry = files[rel]
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.oxeo-part")
    try:
        body = client.get_object(Bucket=bucket, Key=objects_prefix(folder) + entry.sha256)["Body"]
    except Exception as exc:
        if error_code(exc) in MISSING_KEY_CODES:
            raise _Gone from exc
        raise
    sha = hashlib.sha256()
    size = 0
    with tmp.open("wb") as fh:
        for chunk in body.iter_chunks(1024 * 1024):
            sha.update(chunk)
            size += len(chunk)
            fh.write(chunk)
    if sha.hexdigest() != entry.sha256 or size != entry.size:
        tmp.unlink(missing_ok=True)
        msg = (
            f"s3://{bucket}/{objects_prefix(folder)}{entry.sha256} does not hold the content "
            f"its name says (for {rel!r}): the store is damaged; sync again"
        )
        raise StorageError(msg)
    tmp.replace(target)
    return size


def _write_state(dest: Path, bucket: str, folder: str, rels: list[str], tree: str) -> None:
    state = {"bucket": bucket, "folder": folder, "tree": tree, "files": rels}
    (dest / PULL_STATE_FILE).write_text(json.dumps(state), encoding="utf-8")


def _pull_legacy(
    client: Any, bucket: str, folder: str, dest: Path, *, delete: bool, pool: Any
) -> SyncReport:
    """Pull a folder synced by oxeo-flows 0.2.0: one object per path, no pointer."""
    started = time.perf_counter()
    previous = _read_state(dest)
    where = f"s3://{bucket}/{folder}".rstrip("/")
    with CallCounter(client) as counter:
        with map_s3_errors(f"Cannot list {where}", bucket):
            remote = list_remote(client, bucket, folder)
        remote = {r: v for r, v in remote.items() if not r.startswith(f"{STORE}/")}
        if not remote:
            msg = (
                f"Nothing to pull from {where}: no code was synced there (run `oxeo-flows "
                "sync` or deploy first), or bucket / folder / block point elsewhere"
            )
            raise StorageError(msg)
        _log.warning(
            "%s was synced by oxeo-flows 0.2.0 (no atomic tree); pulling it as it is. Sync it "
            "again with this version so that runs never see a half-written tree.",
            where,
        )
        for rel in remote:
            _safe_target(dest, rel)
        rels = sorted(remote)
        with map_s3_errors(f"Cannot download code from {where}", bucket):
            flags = list(pool.map(lambda r: _needed(client, bucket, folder, dest, r, remote), rels))
            todo = [r for r, n in zip(rels, flags, strict=True) if n]
            sizes = list(pool.map(lambda r: _fetch(client, bucket, folder, dest, r, remote), todo))
            removed = _remove_stale(dest, previous, remote) if delete else []
            _write_state(dest, bucket, folder, rels, "")
        done = set(todo)
        return SyncReport(
            bucket=bucket,
            folder=folder,
            uploaded=tuple(todo),
            skipped=tuple(r for r in rels if r not in done),
            deleted=tuple(removed),
            bytes=sum(sizes),
            seconds=time.perf_counter() - started,
            requests=dict(counter.counts),
        )


def _needed(  # noqa: PLR0917 - a worker of pool.map
    client: Any, bucket: str, folder: str, dest: Path, rel: str, remote: dict[str, Remote]
) -> bool:
    target = dest / rel
    if not target.is_file():
        return True
    digest = file_digest(target).as_tuple()
    return not same_content(client, bucket, object_key(folder, rel), digest, remote[rel])


def _fetch(  # noqa: PLR0917 - a worker of pool.map
    client: Any, bucket: str, folder: str, dest: Path, rel: str, remote: dict[str, Remote]
) -> int:
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.oxeo-part")
    client.download_file(bucket, object_key(folder, rel), str(tmp))
    tmp.replace(target)
    return remote[rel].size


def _remove_stale(dest: Path, previous: list[str], remote: Mapping[str, object]) -> list[str]:
    removed: list[str] = []
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
    return removed


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
    """Yield the paths of the tree published under ``folder`` (used by the CLI and tests).

    For a folder synced by oxeo-flows 0.2.0 (no pointer), the paths of its objects.
    """
    head = read_head(client, bucket, folder)
    if head is None:
        yield from sorted(r for r in list_remote(client, bucket, folder) if not r.startswith(STORE))
        return
    manifest = read_manifest(client, bucket, folder, head.tree)
    yield from sorted(manifest.files if manifest else ())
