"""The layout of a synced folder: content-addressed objects, immutable trees, one pointer.

Everything lives under ``<folder>/.oxeo-flows/``:

* ``objects/<sha256>``: one object per distinct file content, named by its SHA-256 (written
  once, never changed);
* ``trees/<tree>.json``: a manifest, ``{"format": 1, "tree": <tree>, "files": {path:
  {"sha256", "size"}}}``, where ``<tree>`` is the tree digest (`tree_digest`);
* ``HEAD``: the pointer, ``{"format": 1, "tree": <tree>, "history": [[<tree>, <until>], ...]}``:
  the published tree and the trees it replaced with the (S3) time they stopped being current.

A sync uploads the objects, writes the manifest, then replaces ``HEAD`` with one conditional
``PutObject`` (``IfMatch`` the ETag it read, or ``IfNoneMatch: *`` when there was none): a pull
sees the old tree or the new one, never a mix, and of two syncs racing from the same ``HEAD``
exactly one publishes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oxeo_flows.errors import StorageError
from oxeo_flows.storage.s3 import (
    CONFLICT_CODES,
    MISSING_KEY_CODES,
    error_code,
    object_key,
    server_time,
)

__all__ = [
    "FORMAT",
    "STORE",
    "Entry",
    "Head",
    "Lost",
    "Manifest",
    "digest_of",
    "head_key",
    "manifest_key",
    "objects_prefix",
    "publish",
    "read_head",
    "read_manifest",
    "store_prefix",
    "trees_prefix",
    "write_manifest",
]

#: Reserved sub-folder of a synced folder (never a path of the tree: paths live in manifests).
STORE = ".oxeo-flows"
FORMAT = 1
_HISTORY = 20


def store_prefix(folder: str) -> str:
    """``<folder>/.oxeo-flows/``."""
    return object_key(folder, STORE) + "/"


def objects_prefix(folder: str) -> str:
    """Where the content-addressed objects are."""
    return store_prefix(folder) + "objects/"


def trees_prefix(folder: str) -> str:
    """Where the manifests are."""
    return store_prefix(folder) + "trees/"


def head_key(folder: str) -> str:
    """The pointer's key."""
    return store_prefix(folder) + "HEAD"


def manifest_key(folder: str, tree: str) -> str:
    """The key of the manifest of ``tree``."""
    return f"{trees_prefix(folder)}{tree}.json"


@dataclass(frozen=True)
class Entry:
    """One file of a tree: the SHA-256 of its content (its object's name) and its size."""

    sha256: str
    size: int


def digest_of(files: Mapping[str, Entry]) -> str:
    """The tree digest: SHA-256 over every path and content hash (as `tree_digest`)."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel].sha256}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """A complete tree: path -> `Entry`."""

    tree: str
    files: Mapping[str, Entry]

    @classmethod
    def of(cls, files: Mapping[str, Entry]) -> Manifest:
        """The manifest of ``files`` (its digest computed)."""
        return cls(digest_of(files), dict(files))

    def shas(self) -> set[str]:
        """Every object this tree references."""
        return {e.sha256 for e in self.files.values()}

    def to_bytes(self) -> bytes:
        """The manifest's JSON."""
        files = {r: {"sha256": e.sha256, "size": e.size} for r, e in sorted(self.files.items())}
        data = {"format": FORMAT, "tree": self.tree, "files": files}
        return json.dumps(data, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Head:
    """The pointer as read: the published tree, its ETag, and the trees it replaced."""

    tree: str
    etag: str
    history: tuple[tuple[str, float], ...] = ()


class Lost(Exception):
    """Another sync replaced ``HEAD`` first; ``tree`` is what it published (if readable)."""

    def __init__(self, tree: str | None) -> None:
        """Remember the winner's tree."""
        super().__init__(tree)
        self.tree = tree


def _get(client: Any, bucket: str, key: str) -> tuple[dict[str, Any], str] | None:
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in MISSING_KEY_CODES:
            return None
        raise
    body = response["Body"].read()
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        msg = (
            f"s3://{bucket}/{key} is not a manifest or pointer this version of oxeo-flows "
            "reads (written by a newer version, or damaged); upgrade oxeo-flows, or sync again"
        )
        raise StorageError(msg)
    return data, str(response.get("ETag", "")).strip('"')


def read_head(client: Any, bucket: str, folder: str) -> Head | None:
    """The pointer of ``folder``, or None when nothing was synced in this layout."""
    found = _get(client, bucket, head_key(folder))
    if found is None:
        return None
    data, etag = found
    history = tuple((str(t), float(u)) for t, u in data.get("history", []) if isinstance(t, str))
    return Head(str(data["tree"]), etag, history)


def read_manifest(client: Any, bucket: str, folder: str, tree: str) -> Manifest | None:
    """The manifest of ``tree``, or None when it is gone."""
    found = _get(client, bucket, manifest_key(folder, tree))
    if found is None:
        return None
    raw = found[0].get("files", {})
    files = {str(r): Entry(str(e["sha256"]), int(e["size"])) for r, e in raw.items()}
    return Manifest(str(found[0].get("tree", tree)), files)


def write_manifest(client: Any, bucket: str, folder: str, manifest: Manifest) -> float:
    """Write (or refresh) the manifest; return the server time of the write."""
    response = client.put_object(
        Bucket=bucket,
        Key=manifest_key(folder, manifest.tree),
        Body=manifest.to_bytes(),
        ContentType="application/json",
    )
    return server_time(response)


def publish(
    client: Any, bucket: str, folder: str, tree: str, *, previous: Head | None, now: float
) -> Head:
    """Switch ``HEAD`` to ``tree`` if it is still ``previous``; return the new pointer.

    Raises:
        Lost: ``HEAD`` changed since it was read (another sync published first).
    """
    history: list[tuple[str, float]] = []
    if previous is not None and previous.tree != tree:
        history.append((previous.tree, now))
    if previous is not None:
        history.extend(h for h in previous.history if h[0] != tree)
    history = history[:_HISTORY]
    body = json.dumps({"format": FORMAT, "tree": tree, "history": history}).encode()
    condition = {"IfMatch": f'"{previous.etag}"'} if previous is not None else {"IfNoneMatch": "*"}
    try:
        response = client.put_object(
            Bucket=bucket,
            Key=head_key(folder),
            Body=body,
            ContentType="application/json",
            **condition,
        )
    except Exception as exc:
        if error_code(exc) in CONFLICT_CODES:
            now_head = read_head(client, bucket, folder)
            raise Lost(now_head.tree if now_head else None) from exc
        raise
    # Read back: a store that ignores conditional writes (some S3 clones) still tells the
    # loser of a race, as long as the winner's write came last.
    mine = read_head(client, bucket, folder)
    if mine is None or mine.tree != tree:
        raise Lost(mine.tree if mine else None)
    etag = str(response.get("ETag", "")).strip('"')
    return Head(tree, etag, tuple(history))
