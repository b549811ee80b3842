"""Fixtures for apply / doctor tests: proxies (counting, faulty) in front of the real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.fakes.dropping_proxy import DroppingProxy
from tests.fakes.proxy import CountingProxy


@pytest.fixture
def counted(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingProxy]:
    """The Prefect API behind a counting proxy; PREFECT_API_URL points at the proxy."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with CountingProxy(prefect_api) as proxy, temporary_settings({PREFECT_API_URL: proxy.url}):
        monkeypatch.setenv("PREFECT_API_URL", proxy.url)
        yield proxy


@pytest.fixture
def faulty(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[DroppingProxy]:
    """The Prefect API behind a proxy that can lose answers and die; PREFECT_API_URL -> proxy."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with DroppingProxy(prefect_api) as proxy, temporary_settings({PREFECT_API_URL: proxy.url}):
        monkeypatch.setenv("PREFECT_API_URL", proxy.url)
        yield proxy


@pytest.fixture
def uid() -> str:
    """A short unique suffix: the Prefect server is shared by the whole session."""
    return uuid.uuid4().hex[:8]
