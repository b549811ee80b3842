"""Google credentials from service-account JSON held in a secret."""

from __future__ import annotations

import json

import pytest

from oxeo_flows import (
    SecretError,
    gcp_credentials_from_secret,
    google_credentials_from_secret,
)
from tests.secrets._keys import service_account_json
from tests.secrets.conftest import PROJECT


def test_google_credentials_from_fake_secret_manager(fake_sm, gcp_stack, tmp_path) -> None:
    from google.oauth2 import service_account

    gcp_stack()
    info = service_account_json("sat-extractor@test-proj.iam.gserviceaccount.com")
    fake_sm.add(PROJECT, "sat-extractor-sa", info)
    before = set(tmp_path.rglob("*"))
    creds = google_credentials_from_secret("sat-extractor-sa")
    assert isinstance(creds, service_account.Credentials)
    assert creds.service_account_email == "sat-extractor@test-proj.iam.gserviceaccount.com"
    assert creds.project_id == "test-proj"
    assert set(tmp_path.rglob("*")) == before  # nothing written to disk


def test_prefect_gcp_credentials(monkeypatch) -> None:
    from prefect_gcp import GcpCredentials

    info = service_account_json()
    monkeypatch.setenv("SA_JSON", info)
    block = gcp_credentials_from_secret("sa-json")
    assert isinstance(block, GcpCredentials)
    assert block.project == "test-proj"
    assert block.service_account_file is None
    private_key = json.loads(info)["private_key"]
    assert private_key.splitlines()[1] not in repr(block)
    assert block.get_credentials_from_service_account().service_account_email == (
        "sa@test-proj.iam.gserviceaccount.com"
    )
    assert gcp_credentials_from_secret("sa-json", project="override").project == "override"


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("not json", "does not parse as JSON"),
        ("[1, 2]", "not an object"),
        ('{"type": "authorized_user"}', "missing"),
        (
            json.dumps(
                {
                    "type": "external_account",
                    "client_email": "a",
                    "private_key": "b",
                    "token_uri": "c",
                }
            ),
            "type is 'external_account'",
        ),
    ],
)
def test_not_a_service_account(monkeypatch, value: str, match: str) -> None:
    monkeypatch.setenv("BAD_SA", value)
    with pytest.raises(SecretError, match=match):
        google_credentials_from_secret("bad-sa")


def test_unusable_private_key(monkeypatch) -> None:
    info = json.loads(service_account_json())
    info["private_key"] = (
        "-----BEGIN PRIVATE KEY-----\nnot-a-key-canary-xyz\n-----END PRIVATE KEY-----\n"
    )
    monkeypatch.setenv("BROKEN_SA", json.dumps(info))
    with pytest.raises(SecretError, match="unusable") as err:
        google_credentials_from_secret("broken-sa")
    assert "canary-xyz" not in str(err.value)
