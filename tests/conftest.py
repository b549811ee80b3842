"""Shared fixtures: a real Prefect server, moto's HTTP server, and environment isolation."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._util import free_port, write_stack

# Prefect reads these when its settings are first built: set them before it is imported.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_API_BLOCKS_REGISTER_ON_START", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")
# Never let a test pick up real cloud credentials or config from the machine.
for _var in (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AWS_PROFILE",
    "OXEO_FLOWS_STACK",
    "OXEO_FLOWS_CONFIG",
):
    os.environ.pop(_var, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "eu-west-1"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# google.auth must never probe the real metadata server (169.254.169.254).
os.environ["GCE_METADATA_HOST"] = "127.0.0.1:9"
os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"
os.environ["NO_GCE_CHECK"] = "true"


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """Every test gets the environment back as it found it."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _fresh_secret_cache() -> Iterator[None]:
    """No secret cached (or registered for masking) by one test is seen by the next."""
    from oxeo_flows import _redact
    from oxeo_flows.secrets import clear_secret_cache

    clear_secret_cache()
    yield
    clear_secret_cache()
    _redact._forget_all()


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in an empty directory, so no stack file is found by accident."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect API server (SQLite), shared by the whole session. Yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def prefect_api(prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Prefect API URL, also exported in the environment for subprocesses."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    return prefect_server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's HTTP server on 127.0.0.1 (S3, Secrets Manager, EC2...). Yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """moto's endpoint, reset before each test and exported as ``AWS_ENDPOINT_URL``."""
    import urllib.request

    req = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server


@pytest.fixture
def stack_file(tmp_path: Path) -> Any:
    """A writer for stack files in the test's working directory."""

    def write(body: str, *, name: str = "pyproject.toml") -> Path:
        return write_stack(tmp_path, body, name=name)

    return write


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every HTTP request the Prefect clients send, as (method, path), counted at httpx."""
    import httpx

    seen: list[tuple[str, str]] = []
    sync_send = httpx.Client.send
    async_send = httpx.AsyncClient.send

    def send(self: httpx.Client, request: httpx.Request, **kw: Any) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return sync_send(self, request, **kw)

    async def asend(self: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return await async_send(self, request, **kw)

    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.setattr(httpx.AsyncClient, "send", asend)
    return seen
