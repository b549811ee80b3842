"""Helpers for S3 tests on moto's HTTP server: a real boto3 client and an API-call counter."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

REGION = "eu-west-1"


def s3_client() -> Any:
    """A boto3 S3 client talking to moto (AWS_ENDPOINT_URL is set by the ``moto`` fixture)."""
    import boto3

    return boto3.session.Session().client(
        "s3", region_name=REGION, endpoint_url=os.environ["AWS_ENDPOINT_URL"]
    )


def make_bucket(client: Any, name: str = "oxeo-code") -> str:
    """Create a bucket on moto."""
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


class Calls:
    """Counts the S3 operations a client sends, via boto3's own event hooks (not a mock)."""

    def __init__(self, client: Any) -> None:
        self.ops: Counter[str] = Counter()
        self.keys: dict[str, list[str]] = {}
        client.meta.events.register(
            "provide-client-params.s3", self._seen, unique_id=f"calls-{id(self)}"
        )

    def _seen(self, model: Any, params: Any, **_: Any) -> None:
        self.ops[model.name] += 1
        key = params.get("Key") if isinstance(params, dict) else None
        if key:
            self.keys.setdefault(model.name, []).append(key)

    def reset(self) -> None:
        """Forget the calls counted so far."""
        self.ops.clear()
        self.keys.clear()


def remote_keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    """Every key in a bucket under a prefix, sorted."""
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(out)


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write files (relative path → content) under ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def published(client: Any, bucket: str, folder: str) -> dict[str, bytes]:
    """The tree a pull of ``folder`` gets: path -> content, read through pointer and manifest."""
    import json

    store = f"{folder}/.oxeo-flows" if folder else ".oxeo-flows"
    head = json.loads(client.get_object(Bucket=bucket, Key=f"{store}/HEAD")["Body"].read())
    key = f"{store}/trees/{head['tree']}.json"
    manifest = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    return {
        rel: client.get_object(Bucket=bucket, Key=f"{store}/objects/{e['sha256']}")["Body"].read()
        for rel, e in manifest["files"].items()
    }


def as_bytes(files: dict[str, str | bytes]) -> dict[str, bytes]:
    """A tree written by `write_tree`, as `published` returns it."""
    return {k: v if isinstance(v, bytes) else v.encode() for k, v in files.items()}
