"""``oxeo-flows secrets get`` / ``check``."""

from __future__ import annotations

from typer.testing import CliRunner

from oxeo_flows.cli import app
from tests.secrets.conftest import PROJECT

runner = CliRunner()


def test_get_masks_and_names_the_source(monkeypatch) -> None:
    monkeypatch.setenv("CLI_TOKEN", "cli-secret-value")
    result = runner.invoke(app, ["secrets", "get", "cli-token"])
    assert result.exit_code == 0, result.output
    assert "cli-secret-value" not in result.output
    assert "**********" in result.output
    assert "from env: environment variable CLI_TOKEN" in result.output


def test_get_reveal_prints_the_value_alone(monkeypatch) -> None:
    monkeypatch.setenv("CLI_TOKEN", "cli-secret-value")
    result = runner.invoke(app, ["secrets", "get", "cli-token", "--reveal"])
    assert result.exit_code == 0
    assert result.stdout == "cli-secret-value\n"
    assert "from env" in result.stderr


def test_get_from_gcp_with_stack_option(fake_sm, gcp_stack) -> None:
    gcp_stack()
    fake_sm.add(PROJECT, "api-key", "gcp-cli-value")
    result = runner.invoke(app, ["secrets", "get", "api-key", "--stack", "test"])
    assert result.exit_code == 0, result.output
    assert f"from gcp: projects/{PROJECT}/secrets/api-key/versions/1" in result.output


def test_get_missing_exits_1_with_sources(monkeypatch) -> None:
    result = runner.invoke(app, ["secrets", "get", "nope-missing", "--source", "env"])
    assert result.exit_code == 1
    assert "NOPE_MISSING is not set" in result.output
    assert "Traceback" not in result.output


def test_check(monkeypatch, fake_sm, gcp_stack) -> None:
    gcp_stack(
        sources='["env", "gcp"]',
        extra='secrets.required = ["present-env", "gcp://in-gcp", "absent-one"]',
    )
    monkeypatch.setenv("PRESENT_ENV", "present-env-value")
    fake_sm.add(PROJECT, "in-gcp", "in-gcp-value")
    result = runner.invoke(app, ["secrets", "check"])
    assert result.exit_code == 1
    assert "1 of 3 required secret(s) did not resolve" in result.output
    assert "absent-one" in result.output
    assert "present-env-value" not in result.output
    assert "in-gcp-value" not in result.output
    fake_sm.add(PROJECT, "absent-one", "now-there")
    from oxeo_flows.secrets import clear_secret_cache

    clear_secret_cache()
    result = runner.invoke(app, ["secrets", "check"])
    assert result.exit_code == 0, result.output
    assert "All 3 required secret(s) resolve." in result.output


def test_check_without_required(monkeypatch) -> None:
    result = runner.invoke(app, ["secrets", "check"])
    assert result.exit_code == 0
    assert "lists no secrets in secrets.required" in result.output
