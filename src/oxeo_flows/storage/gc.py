"""Garbage collection of a synced folder: trees and objects no live tree needs any more.

Run by `sync_code` after it published. Live are the published tree and every tree it
replaced less than ``grace`` seconds ago (by S3's clock), so a pull that read an older
pointer a moment before the switch still finds every object of its tree. A manifest or object
is deleted only when it is not live, referenced by no manifest that is kept, and older than
``grace`` itself: objects just uploaded by a sync that has not published yet are never
candidates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oxeo_flows.storage.layout import (
    Head,
    Manifest,
    objects_prefix,
    read_manifest,
    trees_prefix,
)
from oxeo_flows.storage.s3 import Stamped, delete_keys, list_stamped

__all__ = ["collect"]


def collect(  # noqa: PLR0917 - one sync's state, passed whole
    client: Any,
    bucket: str,
    folder: str,
    head: Head,
    known: Mapping[str, Manifest],
    stored: Mapping[str, Stamped],
    grace: float,
) -> list[str]:
    """Delete what no live tree references; return the keys deleted.

    Args:
        client: The S3 client.
        bucket: The bucket.
        folder: The synced folder.
        head: The pointer just published.
        known: Manifests already read, by tree digest (the new and the replaced tree).
        stored: The objects listed before uploading (sha -> size, time written).
        grace: Seconds a replaced tree and an unreferenced object are kept.
    """
    manifests, now = list_stamped(client, bucket, trees_prefix(folder))
    live = {head.tree} | {t for t, until in head.history if now - until < grace}
    doomed = [
        name
        for name, st in manifests.items()
        if name.removesuffix(".json") not in live and now - st.modified >= grace
    ]
    kept = [n.removesuffix(".json") for n in manifests if n not in set(doomed)]
    candidates = {sha for sha, st in stored.items() if now - st.modified >= grace}
    for tree, manifest in known.items():
        if tree in kept:
            candidates -= manifest.shas()
    for tree in kept:
        if not candidates:
            break
        if tree in known:
            continue
        other = read_manifest(client, bucket, folder, tree)
        if other is not None:
            candidates -= other.shas()
    keys = [trees_prefix(folder) + n for n in sorted(doomed)]
    keys += [objects_prefix(folder) + sha for sha in sorted(candidates)]
    if not keys:
        return []
    failed = set(delete_keys(client, bucket, keys))
    return [k for k in keys if k not in failed]
