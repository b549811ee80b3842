"""Reference parsing, the env source and chain rules that need no backend."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

import oxeo_flows
from oxeo_flows import ConfigError, SecretNotFoundError
from oxeo_flows._redact import is_loaded_secret
from oxeo_flows.secrets import (
    SecretRef,
    aload_secret,
    env_var_name,
    load_secret,
    parse_secret_ref,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("github-token", SecretRef(None, "github-token")),
        ("gcp://deploy-key", SecretRef("gcp", "deploy-key")),
        ("gcp://oxeo-main/deploy-key", SecretRef("gcp", "deploy-key", project="oxeo-main")),
        ("gcp://oxeo-main/deploy-key@3", SecretRef("gcp", "deploy-key", "3", "oxeo-main")),
        ("gcp://deploy-key@latest", SecretRef("gcp", "deploy-key")),
        (
            "gcp://projects/123/secrets/k/versions/7",
            SecretRef("gcp", "k", "7", project="123"),
        ),
        ("aws://prod/db", SecretRef("aws", "prod/db")),
        ("aws://prod/db#password", SecretRef("aws", "prod/db", json_key="password")),
        (
            "aws://arn:aws:secretsmanager:eu-west-1:1:secret:x-AbC#k",
            SecretRef("aws", "arn:aws:secretsmanager:eu-west-1:1:secret:x-AbC", json_key="k"),
        ),
        ("prefect://github-pat", SecretRef("prefect", "github-pat")),
        ("env://MY_VAR", SecretRef("env", "MY_VAR")),
        ("GCP://upper", SecretRef("gcp", "upper")),
    ],
)
def test_parse(text: str, expected: SecretRef) -> None:
    assert parse_secret_ref(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("vault://x", "unknown secret source 'vault'"),
        ("gcp://", "has no name"),
        ("gcp://a/b/c", "malformed GCP"),
        ("gcp://name@", "nothing after"),
        ("aws://name#", "malformed AWS"),
        ("prefect://a/b", "bare name"),
        ("env://A B", "bare name"),
        ("has space", "whitespace"),
    ],
)
def test_parse_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_secret_ref(text)


def test_version_conflict() -> None:
    with pytest.raises(ConfigError, match="keep only one"):
        parse_secret_ref("gcp://k@2", version="3")
    assert parse_secret_ref("gcp://k@2", version="2").version == "2"


def test_roundtrip_str() -> None:
    for text in ("gcp://p/k@2", "aws://a/b#c", "prefect://x", "env://Y", "plain"):
        assert str(parse_secret_ref(text)) == text


@pytest.mark.parametrize(
    ("name", "prefix", "var"),
    [
        ("dask-tls-key", "", "DASK_TLS_KEY"),
        ("sat-extractor.sa", "", "SAT_EXTRACTOR_SA"),
        ("github/token", "OXEO_SECRET_", "OXEO_SECRET_GITHUB_TOKEN"),
        ("Already_UPPER", "", "ALREADY_UPPER"),
        ("ünï", "", "_N_"),
    ],
)
def test_env_var_name(name: str, prefix: str, var: str) -> None:
    assert env_var_name(name, prefix) == var


def test_env_source_normalises_and_returns_secretstr(monkeypatch) -> None:
    monkeypatch.setenv("DASK_TLS_KEY", "tls-key-material")
    value = load_secret("dask-tls-key")
    assert isinstance(value, SecretStr)
    assert value.get_secret_value() == "tls-key-material"
    assert "tls-key-material" not in repr(value)
    assert is_loaded_secret("tls-key-material")


def test_top_level_exports() -> None:
    assert oxeo_flows.load_secret is load_secret
    for name in (
        "aload_secret",
        "clear_secret_cache",
        "ssh_key_file",
        "git_ssh_env",
        "gcp_credentials_from_secret",
        "google_credentials_from_secret",
    ):
        assert name in oxeo_flows.__all__
        assert callable(getattr(oxeo_flows, name))


def test_env_prefix_from_stack(monkeypatch, stack_file) -> None:
    stack_file('[tool.oxeo-flows.stacks.local]\nsecrets.env-prefix = "APP_"\n')
    monkeypatch.setenv("APP_DB_PASSWORD", "prefixed-value")
    monkeypatch.setenv("DB_PASSWORD", "unprefixed-value")
    assert load_secret("db-password", sources=["env"]).get_secret_value() == "prefixed-value"


def test_env_reference_is_literal(monkeypatch) -> None:
    monkeypatch.setenv("lower_case_var", "literal-value")
    assert load_secret("env://lower_case_var").get_secret_value() == "literal-value"
    with pytest.raises(SecretNotFoundError, match="lower_case_var_missing is not set"):
        load_secret("env://lower_case_var_missing")


def test_env_is_read_live(monkeypatch) -> None:
    monkeypatch.setenv("LIVE_VAR", "first-live")
    assert load_secret("live-var", sources=["env"]).get_secret_value() == "first-live"
    monkeypatch.setenv("LIVE_VAR", "second-live")
    assert load_secret("live-var", sources=["env"]).get_secret_value() == "second-live"


def test_empty_env_var_is_not_found(monkeypatch) -> None:
    monkeypatch.setenv("EMPTY_ONE", "")
    with pytest.raises(SecretNotFoundError, match="EMPTY_ONE is empty"):
        load_secret("empty-one", sources=["env"])


def test_env_has_no_versions(monkeypatch) -> None:
    monkeypatch.setenv("VERSIONED", "v-value")
    with pytest.raises(SecretNotFoundError, match="no versions"):
        load_secret("versioned", sources=["env"], version="2")


def test_stack_changed_by_env_var_is_seen(monkeypatch) -> None:
    monkeypatch.setenv("SWITCHED", "plain-value")
    monkeypatch.setenv("NEW_SWITCHED", "prefixed-value")
    assert load_secret("switched", sources=["env"]).get_secret_value() == "plain-value"
    monkeypatch.setenv("OXEO_FLOWS_SECRETS__ENV_PREFIX", "NEW_")
    assert load_secret("switched", sources=["env"]).get_secret_value() == "prefixed-value"
    monkeypatch.setenv("OXEO_FLOWS_SECRETS__SOURCES", "env")
    monkeypatch.delenv("NEW_SWITCHED")
    with pytest.raises(SecretNotFoundError) as info:
        load_secret("switched")
    assert "prefect:" not in str(info.value)
    assert "env OXEO_FLOWS_SECRETS__SOURCES" in str(info.value)


def test_bad_sources_argument() -> None:
    with pytest.raises(ConfigError, match="unknown secret source"):
        load_secret("x", sources=["vault"])
    with pytest.raises(ConfigError, match="empty"):
        load_secret("x", sources=[])


def test_stack_by_name_and_object(monkeypatch, stack_file) -> None:
    from oxeo_flows import load_stack

    stack_file('[tool.oxeo-flows.stacks.other]\nsecrets.env-prefix = "OTHER_"\n')
    monkeypatch.setenv("OTHER_K", "other-value")
    assert load_secret("k", stack="other", sources=["env"]).get_secret_value() == "other-value"
    stack = load_stack("other")
    assert load_secret("k", stack=stack, sources=["env"]).get_secret_value() == "other-value"
    with pytest.raises(ConfigError, match="Unknown stack"):
        load_secret("k", stack="nope")


def test_aload_env(monkeypatch) -> None:
    monkeypatch.setenv("ASYNC_ONE", "async-value")
    value = asyncio.run(aload_secret("async-one", sources=["env"]))
    assert value.get_secret_value() == "async-value"


def test_secrets_section_validation(stack_file) -> None:
    from oxeo_flows import load_stack

    stack_file('[tool.oxeo-flows.stacks.local]\nsecrets.env-prefix = "BAD-PREFIX"\n')
    with pytest.raises(ConfigError, match=r"secrets\.env-prefix"):
        load_stack()
    stack_file('[tool.oxeo-flows.stacks.local]\nsecrets.gcp-project = "X"\n')
    with pytest.raises(ConfigError, match=r"secrets\.gcp-project"):
        load_stack()
    stack_file('[tool.oxeo-flows.stacks.local]\nsecrets.sources = ["env", "vault"]\n')
    with pytest.raises(ConfigError, match=r"secrets\.sources"):
        load_stack()
