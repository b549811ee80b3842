"""GCP Secret Manager source against the in-repo gRPC fake."""

from __future__ import annotations

import grpc
import pytest

from oxeo_flows import (
    ConfigError,
    SecretAccessError,
    SecretIntegrityError,
    SecretNotFoundError,
)
from oxeo_flows.secrets import load_secret, resolve_secret
from oxeo_flows.secrets.gcp import is_loopback_endpoint
from tests.secrets.conftest import PROJECT


def test_reads_latest_and_pinned_versions(fake_sm, gcp_stack) -> None:
    gcp_stack()
    fake_sm.add(PROJECT, "api-key", "first-value")
    fake_sm.add(PROJECT, "api-key", "second-value")
    loaded = resolve_secret("api-key")
    assert loaded.value.get_secret_value() == "second-value"
    assert loaded.source == "gcp"
    assert loaded.where == f"projects/{PROJECT}/secrets/api-key/versions/2"
    assert load_secret("api-key", version="1").get_secret_value() == "first-value"
    assert load_secret(f"gcp://{PROJECT}/api-key@1").get_secret_value() == "first-value"
    assert load_secret("gcp://api-key@2").get_secret_value() == "second-value"
    assert fake_sm.accessed[-1] == f"projects/{PROJECT}/secrets/api-key/versions/2"


def test_explicit_project_in_reference(fake_sm, gcp_stack) -> None:
    gcp_stack()
    fake_sm.add("other-proj", "tok", "other-project-value")
    assert load_secret("gcp://other-proj/tok").get_secret_value() == "other-project-value"
    assert fake_sm.accessed == ["projects/other-proj/secrets/tok/versions/latest"]


def test_unavailable_twice_then_ok_makes_three_calls(fake_sm, gcp_stack) -> None:
    gcp_stack()
    fake_sm.add(PROJECT, "flaky", "flaky-value")
    fake_sm.fail(grpc.StatusCode.UNAVAILABLE, times=2)
    assert load_secret("flaky").get_secret_value() == "flaky-value"
    assert fake_sm.calls["AccessSecretVersion"] == 3


def test_unavailable_beyond_retries_stops_with_access_error(
    fake_sm, gcp_stack, monkeypatch
) -> None:
    gcp_stack(sources='["gcp", "env"]', extra="secrets.retries = 1")
    monkeypatch.setenv("DOWN", "env-value-not-used")
    fake_sm.add(PROJECT, "down", "x" * 8)
    fake_sm.fail(grpc.StatusCode.UNAVAILABLE, times=5)
    with pytest.raises(SecretAccessError, match=r"still failing after 2 attempt"):
        load_secret("down")
    assert fake_sm.calls["AccessSecretVersion"] == 2


def test_deadline_exceeded_is_retried(fake_sm, gcp_stack) -> None:
    gcp_stack()
    fake_sm.add(PROJECT, "slow", "slow-value")
    fake_sm.fail(grpc.StatusCode.DEADLINE_EXCEEDED, times=1)
    assert load_secret("slow").get_secret_value() == "slow-value"
    assert fake_sm.calls["AccessSecretVersion"] == 2


def test_permission_denied_stops_the_chain(fake_sm, gcp_stack, monkeypatch) -> None:
    # The env source (later in the chain) has a value: it must NOT be used as a fallback.
    gcp_stack(sources='["gcp", "env"]')
    monkeypatch.setenv("LOCKED", "weaker-fallback-value")
    fake_sm.add(PROJECT, "locked", "real-value")
    fake_sm.fail(grpc.StatusCode.PERMISSION_DENIED, message="caller lacks accessor role")
    with pytest.raises(SecretAccessError) as info:
        load_secret("locked")
    text = str(info.value)
    assert "denied" in text
    assert "roles/secretmanager.secretAccessor" in text
    assert f"projects/{PROJECT}/secrets/locked/versions/latest" in text
    assert fake_sm.calls["AccessSecretVersion"] == 1


def test_not_found_everywhere_lists_each_source(fake_sm, gcp_stack) -> None:
    gcp_stack(sources='["env", "gcp"]')
    with pytest.raises(SecretNotFoundError) as info:
        load_secret("nowhere-secret")
    text = str(info.value)
    assert "env: environment variable NOWHERE_SECRET is not set" in text
    assert f"gcp: projects/{PROJECT}/secrets/nowhere-secret/versions/latest does not exist" in text
    assert "secrets.sources of stack 'test'" in text
    assert isinstance(info.value, KeyError)


def test_not_found_moves_on_to_next_source(fake_sm, gcp_stack, monkeypatch) -> None:
    gcp_stack(sources='["gcp", "env"]')
    monkeypatch.setenv("ONLY_IN_ENV", "env-only-value")
    loaded = resolve_secret("only-in-env")
    assert loaded.source == "env"
    assert loaded.tried[0][0] == "gcp"
    assert loaded.value.get_secret_value() == "env-only-value"


def test_bad_crc32c_is_an_integrity_error(fake_sm, gcp_stack) -> None:
    gcp_stack()
    fake_sm.add(PROJECT, "corrupt", "payload-value")
    fake_sm.corrupt_crc()
    with pytest.raises(SecretIntegrityError, match="CRC32C") as info:
        load_secret("corrupt")
    assert "payload-value" not in str(info.value)
    # Not cached: the next read verifies a good payload.
    assert load_secret("corrupt").get_secret_value() == "payload-value"


def test_non_utf8_payload_is_refused(fake_sm, gcp_stack) -> None:
    gcp_stack()
    fake_sm.add(PROJECT, "binary", b"\xff\xfe\x00")
    with pytest.raises(SecretAccessError, match="not UTF-8"):
        load_secret("binary")


def test_missing_project_is_a_config_error(fake_sm, stack_file) -> None:
    stack_file(
        f"""
[tool.oxeo-flows.stacks.local]
secrets.sources = ["gcp"]
gcp.endpoints.secret-manager = "{fake_sm.endpoint}"
"""
    )
    with pytest.raises(ConfigError, match=r"secrets.gcp-project or gcp.project"):
        load_secret("anything")
    assert fake_sm.calls["AccessSecretVersion"] == 0


def test_secrets_gcp_project_wins_over_gcp_project(fake_sm, gcp_stack) -> None:
    gcp_stack(extra='secrets.gcp-project = "secrets-proj"')
    fake_sm.add("secrets-proj", "k", "from-secrets-project")
    assert load_secret("k").get_secret_value() == "from-secrets-project"


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("127.0.0.1:8085", True),
        ("127.1.2.3:443", True),
        ("localhost:9000", True),
        ("[::1]:8085", True),
        ("http://127.0.0.1:8085", True),
        ("secretmanager.googleapis.com", False),
        ("secretmanager.europe-west4.rep.googleapis.com:443", False),
        ("10.0.0.5:443", False),
        ("192.168.1.10:8085", False),
        ("localhost.example.com:443", False),
        ("[2001:db8::1]:443", False),
    ],
)
def test_loopback_detection(endpoint: str, loopback: bool) -> None:
    assert is_loopback_endpoint(endpoint) is loopback


def test_non_loopback_endpoint_uses_tls_and_real_credentials(tmp_path, monkeypatch) -> None:
    """A private endpoint gets the normal (TLS, ADC) client; nothing is dialed here."""
    from google.auth.credentials import AnonymousCredentials
    from google.oauth2 import service_account

    from oxeo_flows.secrets.gcp import secret_manager_client
    from tests.secrets._keys import service_account_json

    key_file = tmp_path / "sa.json"
    key_file.write_text(service_account_json())
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    client = secret_manager_client("secretmanager.example.invalid:443")
    transport = client.transport
    assert transport._host == "secretmanager.example.invalid:443"
    assert isinstance(transport._credentials, service_account.Credentials)
    assert not isinstance(transport._credentials, AnonymousCredentials)
    loop = secret_manager_client("127.0.0.1:1")
    assert isinstance(loop.transport._credentials, AnonymousCredentials) or (
        loop.transport._credentials is None
    )
