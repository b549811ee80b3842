"""`SyncReport`: what a `sync_code` or `pull_code` call did."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["SyncReport"]


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
        collected: Objects and old trees deleted by the garbage collection (and, on the first
            sync of a folder synced by oxeo-flows 0.2.0, its per-path objects).
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
    collected: int = 0

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
