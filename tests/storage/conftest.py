"""Storage fixtures: moto with the ``oxeo-code`` bucket; the digest cache in a temporary dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.storage._s3util import make_bucket, s3_client


@pytest.fixture
def s3(moto: str) -> Any:
    """A boto3 client on moto, with the ``oxeo-code`` bucket created."""
    client = s3_client()
    make_bucket(client)
    return client


@pytest.fixture(autouse=True)
def _digest_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache
