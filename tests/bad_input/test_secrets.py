"""`load_secret` references and sources, endpoints, SSH keys, git env, GCP credentials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import oxeo_flows as of
from oxeo_flows.errors import ConfigError, SecretAccessError, SecretError, SecretNotFoundError
from oxeo_flows.stack import load_stack
from tests.bad_input._expect import cases, expect

FORMS = "env://VAR"


@pytest.fixture(autouse=True)
def _no_clients_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    yield
    from oxeo_flows.secrets import aws, gcp

    for client in list(gcp._clients.values()):
        client.transport.close()
    gcp._clients.clear()
    aws._clients.clear()


REF_CASES = [
    ("empty", "", "non-empty string", FORMS),
    ("whitespace", "   ", "non-empty string", FORMS),
    ("inner-space", "name with space", "contains whitespace", FORMS),
    ("tab", "db\tpass", "contains whitespace", FORMS),
    ("scheme-ftp", "ftp://x", "unknown secret source 'ftp'", FORMS),
    ("scheme-https", "https://vault/x", "unknown secret source 'https'", FORMS),
    ("scheme-vault", "vault://kv/x", "unknown secret source 'vault'", FORMS),
    ("scheme-fullwidth-lookalike", "\uff45nv://X", "unknown secret source", FORMS),
    ("gcp-no-name", "gcp://", "has no name", "gcp://[PROJECT/]NAME[@VERSION]"),
    ("aws-no-name", "aws://", "has no name", "aws://NAME[#JSON_KEY]"),
    ("env-no-name", "env://", "has no name", FORMS),
    ("prefect-no-name", "prefect://", "has no name", "prefect://BLOCK_NAME"),
    ("gcp-empty-version", "gcp://p/n@", "nothing after '@'", "gcp://p/n@"),
    ("aws-empty-json-key", "aws://x#", "malformed AWS secret reference", "aws://NAME#JSON_KEY"),
]


@pytest.mark.parametrize(("ref", "field", "fix"), cases(REF_CASES))
def test_bad_reference(ref: str, field: str, fix: str) -> None:
    expect(ConfigError, lambda: of.load_secret(ref, sources=["env"]), field, fix)


CALL_CASES = [
    ("name-int", lambda: of.load_secret(3), "got 3", FORMS),
    ("name-none", lambda: of.load_secret(None), "got None", FORMS),
    ("name-bytes", lambda: of.load_secret(b"x"), "non-empty string", FORMS),
    (
        "source-typo",
        lambda: of.load_secret("x", sources=["evn"]),
        "['evn']",
        "valid sources are ['env', 'prefect', 'gcp', 'aws']",
    ),
    (
        "sources-empty",
        lambda: of.load_secret("x", sources=[]),
        "sources argument is empty",
        "leave it out to use the stack's secrets.sources",
    ),
    (
        "version-empty",
        lambda: of.load_secret("x", version=""),
        "secret version",
        "such as 'latest'",
    ),
    (
        "gcp-without-project",
        lambda: of.load_secret("x", sources=["gcp"]),
        "no project",
        "gcp://PROJECT/NAME",
    ),
    ("stack-int", lambda: of.load_secret("x", stack=3), "stack must be", "a stack name"),
]


@pytest.mark.parametrize(("call", "field", "fix"), cases(CALL_CASES))
def test_bad_load_call(call, field: str, fix: str) -> None:
    expect(ConfigError, call, field, fix)


def test_aws_source_without_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """botocore's NoRegionError became ours, naming aws.region and how to set it."""
    for var in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    expect(
        ConfigError,
        lambda: of.load_secret("db-pass", sources=["aws"]),
        "aws.region",
        "OXEO_FLOWS_AWS__REGION=eu-west-1",
    )


def test_aws_profile_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    stack = load_stack(overrides={"aws": {"profile": "nope-profile"}}, environ={})
    expect(
        ConfigError,
        lambda: of.load_secret("x", sources=["aws"], stack=stack),
        "'nope-profile'",
        "aws configure --profile NAME",
    )


def test_aws_endpoint_env_not_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "127.0.0.1:9")
    expect(
        ConfigError,
        lambda: of.load_secret("x", sources=["aws"]),
        "AWS_ENDPOINT_URL",
        "'http://127.0.0.1:5000'",
    )


def _with(section: str, key: str, value: str):
    return lambda: load_stack(overrides={section: {key: value}}, environ={})


# Endpoints: loopback may be plain, anything else must be TLS; malformed ones are refused.
ENDPOINT_CASES = [
    (
        "sm-not-a-host",
        _with("gcp", "endpoints", {"secret_manager": "not a host"}),
        "gcp.endpoints.secret-manager",
        "give HOST:PORT or a URL",
    ),
    (
        "sm-port-range",
        _with("gcp", "endpoints", {"secret_manager": "127.0.0.1:99999"}),
        "gcp.endpoints.secret-manager",
        "port number 1-65535",
    ),
    (
        "sm-empty",
        _with("gcp", "endpoints", {"secret_manager": ""}),
        "gcp.endpoints.secret-manager",
        "give HOST:PORT",
    ),
    (
        "sm-plain-http-remote",
        _with("gcp", "endpoints", {"secret_manager": "http://10.0.0.5:80"}),
        "gcp.endpoints.secret-manager",
        "Use https://",
    ),
    (
        "sm-scheme-grpc",
        _with("gcp", "endpoints", {"secret_manager": "grpc://127.0.0.1:1"}),
        "gcp.endpoints.secret-manager",
        "use http:// or https://",
    ),
    (
        "compute-plain-http-remote",
        _with("gcp", "endpoints", {"compute": "http://compute.corp"}),
        "gcp.endpoints.compute",
        "plain http only for an emulator on 127.0.0.1",
    ),
    (
        "aws-endpoint-no-scheme",
        _with("aws", "endpoint_url", "127.0.0.1:9"),
        "aws.endpoint-url",
        "give the scheme too",
    ),
    (
        "aws-endpoint-words",
        _with("aws", "endpoint_url", "not a url"),
        "aws.endpoint-url",
        "give the scheme too",
    ),
    (
        "aws-endpoint-ftp",
        _with("aws", "endpoint_url", "ftp://127.0.0.1:9"),
        "aws.endpoint-url",
        "use http:// or https://",
    ),
    (
        "aws-endpoint-plain-http-remote",
        _with("aws", "endpoint_url", "http://10.0.0.5:9"),
        "aws.endpoint-url",
        "Use https://",
    ),
]


@pytest.mark.parametrize(("call", "field", "fix"), cases(ENDPOINT_CASES))
def test_bad_endpoint(call, field: str, fix: str) -> None:
    expect(ConfigError, call, field, fix)


def test_loopback_endpoint_down_is_an_access_error() -> None:
    """A loopback emulator that is not running: our error, naming retries, after one attempt."""
    stack = load_stack(
        overrides={
            "gcp": {"endpoints": {"secret_manager": "127.0.0.1:9"}},
            "secrets": {"retries": 0, "timeout": 5, "gcp_project": "my-proj-1"},
        },
        environ={},
    )
    expect(
        SecretAccessError,
        lambda: of.load_secret("gcp://my-proj-1/x", stack=stack),
        "127.0.0.1:9",
        "raise secrets.retries",
    )


def test_remote_endpoint_needs_credentials() -> None:
    """A non-loopback endpoint is dialed with TLS and real credentials: none here, so ours."""
    stack = load_stack(
        overrides={
            "gcp": {"endpoints": {"secret_manager": "10.0.0.5:443"}},
            "secrets": {"retries": 0, "gcp_project": "my-proj-1"},
        },
        environ={},
    )
    expect(
        SecretAccessError,
        lambda: of.load_secret("gcp://my-proj-1/x", stack=stack),
        "no Google credentials",
        "gcloud auth application-default login",
    )


SSH_CASES = [
    ("not-a-key", "not a key", "is not a private key", "-----BEGIN OPENSSH PRIVATE KEY-----"),
    (
        "public-key",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI test@host",
        "an SSH public key",
        "Store the private key",
    ),
    (
        "ecdsa-public-key",
        "ecdsa-sha2-nistp256 AAAAE2VjZHNh x",
        "an SSH public key",
        "private key file's contents",
    ),
    (
        "putty-key",
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
        "a PuTTY key",
        "puttygen KEY.ppk -O private-openssh",
    ),
    (
        "certificate-not-key",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "is not a private key",
        "OpenSSH or PEM form",
    ),
]


@pytest.mark.parametrize(("value", "field", "fix"), cases(SSH_CASES))
def test_ssh_key_not_a_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str, field: str, fix: str
) -> None:
    monkeypatch.setenv("BAD_DEPLOY_KEY", value)
    monkeypatch.setenv("TMPDIR", str(tmp_path))

    def use() -> None:
        with of.ssh_key_file("bad-deploy-key", sources=["env"]):
            pass

    message = expect(ConfigError, use, "'bad-deploy-key'", fix)
    assert field in message
    assert value.splitlines()[0] not in message  # the value itself is never shown
    assert not list(tmp_path.glob("oxeo-ssh-*"))  # nothing written


def test_ssh_key_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPTY_DEPLOY_KEY", "")

    def use() -> None:
        with of.ssh_key_file("empty-deploy-key", sources=["env"]):
            pass

    expect(SecretNotFoundError, use, "EMPTY_DEPLOY_KEY is empty", "Create it in one of these")


KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)

GIT_CASES = [
    (
        "checking-typo",
        {"strict_host_key_checking": "maybe"},
        "strict_host_key_checking",
        "['yes', 'accept-new', 'no']",
    ),
    (
        "checking-bool",
        {"strict_host_key_checking": True},
        "strict_host_key_checking",
        "must be one of",
    ),
    (
        "hosts-file-missing",
        {"known_hosts_file": "/nonexistent/known_hosts"},
        "known_hosts_file",
        "does not exist; give a known-hosts file",
    ),
    (
        "hosts-file-directory",
        {"known_hosts_file": "/"},
        "known_hosts_file",
        "is a directory; give a known-hosts file",
    ),
    (
        "two-host-sources",
        {"known_hosts": "x", "known_hosts_file": "/tmp/x"},
        "known_hosts",
        "give at most one of",
    ),
    ("hosts-garbage", {"known_hosts": "garbage"}, "known_hosts", "ssh-keyscan HOST"),
    (
        "hosts-two-fields",
        {"known_hosts": "github.com ssh-ed25519"},
        "not a known-hosts entry",
        "ssh-keyscan HOST",
    ),
    (
        "hosts-empty",
        {"known_hosts": "\n# only a comment\n"},
        "known_hosts is empty",
        "or leave it out",
    ),
]


@pytest.mark.parametrize(("kwargs", "field", "fix"), cases(GIT_CASES))
def test_bad_git_ssh_env(monkeypatch: pytest.MonkeyPatch, kwargs, field: str, fix: str) -> None:
    monkeypatch.setenv("GIT_DEPLOY_KEY", KEY)

    def use() -> None:
        with of.git_ssh_env("git-deploy-key", sources=["env"], **kwargs):
            pass

    expect(ConfigError, use, field, fix)


CREDENTIAL_CASES = [
    ("not-json", "{not json", "does not parse as JSON", "--data-file=key.json"),
    (
        "authorized-user",
        '{"type": "authorized_user"}',
        "fields ['client_email', 'private_key'",
        "gcloud iam service-accounts keys create",
    ),
    ("json-list", "[1, 2]", "JSON but not an object", "service-account key"),
    ("ssh-key-instead", KEY, "is not service-account JSON", "store the key file's contents"),
]


@pytest.mark.parametrize(
    "factory", ["gcp_credentials_from_secret", "google_credentials_from_secret"]
)
@pytest.mark.parametrize(("value", "field", "fix"), cases(CREDENTIAL_CASES))
def test_bad_gcp_credentials(
    monkeypatch: pytest.MonkeyPatch, factory: str, value: str, field: str, fix: str
) -> None:
    monkeypatch.setenv("SA_KEY_BAD", value)
    message = expect(
        SecretError, lambda: getattr(of, factory)("sa-key-bad", sources=["env"]), field, fix
    )
    assert "'sa-key-bad'" in message
    if len(value) > 8:
        assert value not in message
