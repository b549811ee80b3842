"""Prefect ``Secret`` blocks on the real Prefect test server."""

from __future__ import annotations

import json
import uuid

import pytest
from prefect.blocks.system import Secret

from oxeo_flows import SecretNotFoundError
from oxeo_flows.secrets import aload_secret, load_secret, resolve_secret


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_value_returned_exactly_as_stored(prefect_api: str) -> None:
    numeric = _name("numeric")
    Secret(value="123").save(numeric)
    # Prefect's own get() json-decodes the string: that is what we must not do.
    assert Secret.load(numeric).get() == 123
    loaded = resolve_secret(numeric)
    assert loaded.source == "prefect"
    assert loaded.value.get_secret_value() == "123"
    quoted = _name("quoted")
    Secret(value='"quoted"').save(quoted)
    assert load_secret(f"prefect://{quoted}").get_secret_value() == '"quoted"'


def test_json_block_value_is_json_text(prefect_api: str) -> None:
    name = _name("jsonblock")
    Secret(value={"user": "u", "token": "t-123"}).save(name)
    value = load_secret(name, sources=["prefect"]).get_secret_value()
    assert json.loads(value) == {"user": "u", "token": "t-123"}


def test_env_wins_over_prefect_in_default_order(prefect_api: str, monkeypatch) -> None:
    name = _name("ordered")
    Secret(value="from-prefect-block").save(name)
    assert resolve_secret(name).source == "prefect"
    monkeypatch.setenv(name.upper().replace("-", "_"), "from-environment")
    loaded = resolve_secret(name)
    assert (loaded.source, loaded.value.get_secret_value()) == ("env", "from-environment")


def test_missing_block_and_invalid_name(prefect_api: str) -> None:
    with pytest.raises(SecretNotFoundError) as info:
        load_secret("no-such-block-xyz")
    text = str(info.value)
    assert "env: environment variable NO_SUCH_BLOCK_XYZ is not set" in text
    assert "prefect: no Secret block named 'no-such-block-xyz'" in text
    with pytest.raises(SecretNotFoundError, match="not a valid Prefect block name"):
        load_secret("Upper_Case", sources=["prefect"])


def test_async_from_block(prefect_api: str) -> None:
    import asyncio

    name = _name("asyncblock")
    Secret(value="async-block-value").save(name)
    assert asyncio.run(aload_secret(f"prefect://{name}")).get_secret_value() == "async-block-value"


def test_no_api_configured_means_not_found_quickly(monkeypatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(SecretNotFoundError, match="PREFECT_API_URL is not set"),
    ):
        load_secret("some-block", sources=["prefect"])
