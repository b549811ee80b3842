"""Fixtures of the secrets tests: a clean cache, the fake Secret Manager, stacks using it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from oxeo_flows import _redact
from oxeo_flows.secrets import clear_secret_cache
from oxeo_flows.testing.secretmanager import SecretManagerEmulator as FakeSecretManager

PROJECT = "test-proj"


@pytest.fixture(autouse=True)
def _clean_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # google.auth must never probe the GCE metadata server (a non-loopback address).
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    clear_secret_cache()
    _redact._forget_all()
    yield
    clear_secret_cache()
    _redact._forget_all()
    from oxeo_flows.secrets import aws, gcp

    for client in list(gcp._clients.values()):
        client.transport.close()
    gcp._clients.clear()
    aws._clients.clear()


@pytest.fixture
def fake_sm() -> Iterator[FakeSecretManager]:
    with FakeSecretManager() as fake:
        yield fake


@pytest.fixture
def gcp_stack(fake_sm: FakeSecretManager, stack_file: Callable[..., Path]) -> Callable[..., Path]:
    """Write a stack whose secrets come from the fake (sources given as TOML list text)."""

    def write(sources: str = '["gcp"]', extra: str = "") -> Path:
        return stack_file(
            f"""
[tool.oxeo-flows]
default-stack = "test"

[tool.oxeo-flows.stacks.test]
secrets.sources = {sources}
secrets.retry-initial-delay = 0.01
secrets.retry-max-delay = 0.05
secrets.timeout = 5
{extra}

[tool.oxeo-flows.stacks.test.gcp]
project = "{PROJECT}"
endpoints.secret-manager = "{fake_sm.endpoint}"
"""
        )

    return write
