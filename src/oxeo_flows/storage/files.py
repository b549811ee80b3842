"""Which files of a project are code, and their content hashes.

`code_files` selects (ignore rules, virtualenvs, symlinks), `file_digest` hashes one file
(MD5 for S3 ETags, SHA-256 for our own metadata and tree digests), `scan` hashes many in
parallel and `tree_digest` turns them into one version string of the code tree.

`DigestCache` remembers the digests of a tree between runs (in the user's cache directory, never
in the tree), keyed by each file's size, inode, modification and *change* time: any write to a
file changes its ctime (``os.utime`` included), so a cached digest is never that of older
content. Entries younger than the timestamp granularity margin are not trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oxeo_flows.errors import ConfigError, StorageError

__all__ = [
    "DEFAULT_IGNORES",
    "PULL_STATE_FILE",
    "DigestCache",
    "FileDigest",
    "LocalFile",
    "code_files",
    "file_digest",
    "scan",
    "tree_digest",
]

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


@dataclass(frozen=True)
class FileDigest:
    """The content hashes of one file.

    Attributes:
        md5: Hex MD5 (what a single-part S3 object's ETag is).
        sha256: Hex SHA-256.
        size: Bytes.
    """

    md5: str
    sha256: str
    size: int

    def as_tuple(self) -> tuple[str, str, int]:
        """``(md5, sha256, size)``."""
        return self.md5, self.sha256, self.size


@dataclass(frozen=True)
class LocalFile:
    """A file of the tree with its digest."""

    rel: str
    path: Path
    digest: FileDigest


def file_digest(path: str | os.PathLike[str]) -> FileDigest:
    """Hash a file's content in one pass (MD5 and SHA-256).

    Args:
        path: The file.

    Returns:
        Its `FileDigest`.

    Raises:
        StorageError: The file cannot be read (vanished, no permission); the message names it.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    size = 0
    try:
        with Path(path).open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                md5.update(chunk)
                sha.update(chunk)
                size += len(chunk)
    except OSError as exc:
        msg = (
            f"cannot read {os.fspath(path)!r}: {exc.strerror or type(exc).__name__} "
            "(was it removed or changed while syncing?); fix it and sync again"
        )
        raise StorageError(msg) from exc
    return FileDigest(md5.hexdigest(), sha.hexdigest(), size)


def _ignore_spec(src: Path, extra: Sequence[str]) -> Any:
    import pathspec

    lines: list[str] = list(DEFAULT_IGNORES)
    for name in (".gitignore", ".prefectignore"):
        file = src / name
        if file.is_file():
            lines.extend(file.read_text(encoding="utf-8", errors="replace").splitlines())
    lines.extend(extra)
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _check_link(root: Path, path: Path, rel: str) -> None:
    """Refuse a symlink whose target is outside the tree (it would upload that file)."""
    target = path.resolve()
    if target != root and root not in target.parents:
        msg = (
            f"{rel!r} in {str(root)!r} is a symlink to {str(target)!r}, outside the directory "
            "being synced; remove the link, or ignore it in .prefectignore / storage.ignore"
        )
        raise ConfigError(msg)


def _keep_dirs(root: Path, here: Path, rel_dir: str, dirnames: list[str], spec: Any) -> list[str]:
    keep = []
    for d in sorted(dirnames):
        path = here / d
        if spec.match_file(f"{rel_dir}{d}/") or (path / "pyvenv.cfg").exists():
            continue
        if path.is_symlink():
            _check_link(root, path, f"{rel_dir}{d}")
            continue  # a link inside the tree: its files are synced once, at their real place
        keep.append(d)
    return keep


def code_files(src: str | os.PathLike[str] = ".", *, ignore: Sequence[str] = ()) -> list[str]:
    """List the files `sync_code` would consider, as sorted POSIX paths relative to ``src``.

    Skips what ``.gitignore`` and ``.prefectignore`` in ``src`` exclude, the ``ignore``
    patterns, `DEFAULT_IGNORES`, and any directory holding a ``pyvenv.cfg`` (a virtualenv).
    A symlink to a file inside ``src`` is followed; one pointing outside is refused.

    Args:
        src: The project directory.
        ignore: Extra gitignore-style patterns.

    Returns:
        Relative paths, sorted.

    Raises:
        ConfigError: ``src`` is empty or not a directory, or a symlink points outside it.
    """
    if not os.fspath(src).strip():
        msg = "sync source is empty; give the project directory (e.g. '.')"
        raise ConfigError(msg)
    root = Path(src).resolve()
    if not root.is_dir():
        msg = f"sync source {os.fspath(src)!r} is not a directory"
        raise ConfigError(msg)
    spec = _ignore_spec(root, ignore)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = _keep_dirs(root, here, rel_dir, dirnames, spec)
        for f in filenames:
            rel = f"{rel_dir}{f}"
            path = here / f
            if spec.match_file(rel):
                continue
            if path.is_symlink():
                _check_link(root, path, rel)
            if path.is_file():
                out.append(rel)
    return sorted(out)


class DigestCache:
    """File digests of one tree from an earlier run, reused while the file is untouched."""

    def __init__(self, root: Path, *, margin: float = 2.0) -> None:
        """Load the cache of ``root``; a file must be ``margin`` s older than it to be trusted."""
        self.margin = margin
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        key = hashlib.sha256(os.fsencode(root)).hexdigest()[:32]
        self.path = base / "oxeo-flows" / "digests" / f"{key}.json"
        self._old: dict[str, list[Any]] = {}
        self._written = 0.0
        self._new: dict[str, list[Any]] = {}
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("root") == os.fsdecode(root):
                self._old, self._written = dict(data["files"]), float(data["written"])

    @staticmethod
    def _key(st: os.stat_result) -> list[Any]:
        return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]

    def digest(self, path: Path, rel: str) -> FileDigest:
        """The file's digest: from the cache when untouched, else hashed (and remembered)."""
        try:
            st = path.stat()
        except OSError:
            return file_digest(path)  # raises the StorageError naming the file
        key = self._key(st)
        entry = self._old.get(rel)
        trusted = st.st_ctime_ns / 1e9 < self._written - self.margin
        if entry and trusted and entry[:4] == key:
            found = FileDigest(entry[4], entry[5], st.st_size)
        else:
            found = file_digest(path)
        self._new[rel] = [*key, found.md5, found.sha256]
        return found

    def save(self, root: Path) -> None:
        """Write the digests seen in this run (best effort: a read-only home is fine)."""
        data = {"root": os.fsdecode(root), "written": time.time(), "files": self._new}
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            tmp.replace(self.path)


def scan(
    root: Path, rels: Sequence[str], pool: ThreadPoolExecutor, cache: DigestCache | None = None
) -> list[LocalFile]:
    """Hash ``rels`` under ``root`` on ``pool`` (reusing ``cache`` entries of untouched files).

    Raises:
        StorageError: A file vanished or cannot be read; the message names it.
    """

    def one(rel: str) -> LocalFile:
        path = root / rel
        digest = cache.digest(path, rel) if cache is not None else file_digest(path)
        return LocalFile(rel, path, digest)

    files = list(pool.map(one, rels))
    if cache is not None:
        cache.save(root)
    return files


def tree_digest(files: Sequence[LocalFile]) -> str:
    """SHA-256 over every path and content hash: a version of the code tree."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.rel):
        h.update(f"{f.rel}\0{f.digest.sha256}\n".encode())
    return h.hexdigest()
