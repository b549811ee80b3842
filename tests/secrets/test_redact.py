"""The registry of loaded values: encodings masked, stored values refused, exceptions masked."""

from __future__ import annotations

import base64
import json
import pickle
import re
from urllib.parse import quote

import pytest

from oxeo_flows import ConfigError
from oxeo_flows._redact import (
    MASK,
    RedactedError,
    is_loaded_secret,
    redact,
    redact_exception,
    refuse_loaded_secrets,
    register_secret_value,
)
from tests.secrets._keys import rsa_pem

TOKEN = "ghp_0123456789abcdefABCDEF0123456789abcd"


def test_encodings_of_a_multiline_key_are_masked() -> None:
    key = rsa_pem()
    register_secret_value(key)
    body = {"SecretString": key}
    forms = [
        key,
        json.dumps(body),
        repr(json.dumps(body).encode()),  # how botocore logs a response body
        base64.b64encode(key.encode()).decode(),
        base64.urlsafe_b64encode(key.encode()).decode().rstrip("="),
        quote(key, safe=""),
        key.replace("\n", "\r\n"),
    ]
    lines = [line for line in key.splitlines() if not line.startswith("-----")]
    for form in forms:
        masked = redact(form)
        assert not any(line in masked for line in lines), form[:40]
        assert MASK in masked
    assert "-----BEGIN PRIVATE KEY-----" not in redact("x")  # armor lines are not registered
    assert redact("-----BEGIN PRIVATE KEY-----") == "-----BEGIN PRIVATE KEY-----"


def test_short_values_are_not_registered() -> None:
    register_secret_value("abc")
    assert not is_loaded_secret("abc")
    assert redact("abc") == "abc"


def test_json_fields_registered_only_when_asked_and_long() -> None:
    value = json.dumps({"user": "admin", "password": "s3cret-Passw0rd!"})
    register_secret_value(value, json_fields=True)
    assert redact("password s3cret-Passw0rd!") == f"password {MASK}"
    assert redact("user admin") == "user admin"  # short fields would mask ordinary words


REFUSED = [
    ({"TOKEN": TOKEN}, "env", "env['TOKEN']"),
    ({"team": f"x-{TOKEN}"}, "vertex.labels", "vertex.labels['team']"),
    ([f"--token={TOKEN}"], "vertex.command", "vertex.command[0]"),
    (f"registry/image:{TOKEN[:12]}", "vertex.image", "vertex.image"),  # a 12-char prefix
    (TOKEN[4:20], "deploy_flow(parameters=)", "deploy_flow(parameters=)"),  # a piece
    ({"nested": {"deeper": [1, {"k": TOKEN}]}}, "parameters", "parameters['nested']"),
    ({TOKEN: "value"}, "env", "env (its key number 1)"),
    (TOKEN.encode(), "job_variables", "job_variables"),
    ({"cmd": ("a", f"b{TOKEN[10:30]}c")}, "command", "command['cmd'][1]"),
]


@pytest.mark.parametrize(("values", "where", "named"), REFUSED)
def test_refuse_loaded_secrets(values, where, named) -> None:
    register_secret_value(TOKEN)
    with pytest.raises(ConfigError) as info:
        refuse_loaded_secrets(values, where=where)
    text = str(info.value)
    assert named in text
    assert "load_secret(name) at run time" in text
    assert TOKEN not in text
    assert TOKEN[4:20] not in text


ACCEPTED = [
    {"team": "geo", "env": "prod"},
    ["python", "-m", "flows.run", "--date", "2026-01-01"],
    "europe-docker.pkg.dev/proj/repo/image:1.2.3",
    {"GITHUB_TOKEN_SECRET": "github-token"},
    "ghp_",  # shorter than a piece
    {"n": 3, "flag": True, "none": None},
    "0123456",  # 7 chars of the token: below the piece length
]


@pytest.mark.parametrize("values", ACCEPTED)
def test_ordinary_values_pass(values) -> None:
    register_secret_value(TOKEN)
    refuse_loaded_secrets(values, where="x")


def test_public_parts_of_a_key_file_are_not_refused() -> None:
    from tests.secrets._keys import service_account_json

    register_secret_value(service_account_json())
    refuse_loaded_secrets(
        {
            "url": "https://oauth2.googleapis.com/token",
            "kind": "service_account",
            "bucket": "https://storage.googleapis.com/test-proj-data",
            "armor": "-----BEGIN PRIVATE KEY-----",
        },
        where="parameters",
    )


def test_nothing_is_refused_before_a_secret_is_loaded() -> None:
    refuse_loaded_secrets({"TOKEN": TOKEN}, where="env")


def test_key_lines_and_pieces_are_refused() -> None:
    key = rsa_pem()
    register_secret_value(key)
    line = key.splitlines()[3]
    with pytest.raises(ConfigError, match=r"metadata\['k'\]"):
        refuse_loaded_secrets({"k": line}, where="metadata")
    # A piece is refused when it shares SUBSTRING_LENGTH characters with letters *and* digits
    # with the key (a letters-only piece could be a word): take the first 20-character piece
    # of the random key's line that has both (about 3% of lines start without a digit).
    piece = next(
        line[i : i + 20]
        for i in range(5, len(line) - 20)
        if re.search("[0-9]", line[i : i + 8]) and re.search("[A-Za-z]", line[i : i + 8])
    )
    with pytest.raises(ConfigError):
        refuse_loaded_secrets(f"ssh-key {piece}", where="metadata")
    refuse_loaded_secrets({"k": "-----BEGIN PRIVATE KEY-----"}, where="metadata")


class _Custom(Exception):
    def __init__(self, token: str) -> None:
        super().__init__("custom")
        self.token = token

    def __str__(self) -> str:
        return f"custom {self.token}"


def test_redact_exception_in_place_and_chained() -> None:
    register_secret_value(TOKEN)
    try:
        try:
            raise KeyError(TOKEN)
        except KeyError as inner:
            raise ValueError(f"bad {TOKEN}", TOKEN.encode()) from inner
    except ValueError as exc:
        outer = exc
    assert redact_exception(outer) is outer
    assert TOKEN not in str(outer)
    assert TOKEN not in str(outer.__cause__)
    assert TOKEN.encode() not in pickle.dumps(outer)
    assert outer.args[0] == f"bad {MASK}"


def test_redact_exception_notes_and_custom_str() -> None:
    register_secret_value(TOKEN)
    exc = RuntimeError("x")
    exc.add_note(f"note {TOKEN}")
    redact_exception(exc)
    assert exc.__notes__ == [f"note {MASK}"]
    custom = _Custom(TOKEN)
    stand_in = redact_exception(custom)
    assert isinstance(stand_in, RedactedError)
    assert str(stand_in) == f"_Custom: custom {MASK}"
    assert TOKEN.encode() not in pickle.dumps(stand_in)


def test_redact_exception_without_secrets_is_identity() -> None:
    exc = ValueError(TOKEN)
    assert redact_exception(exc) is exc
    assert exc.args == (TOKEN,)


def test_protect_value_masks_logs_of_a_value_obtained_elsewhere(caplog) -> None:
    import logging

    from oxeo_flows.secrets._core import protect_value

    protect_value(TOKEN)
    with caplog.at_level(logging.INFO):
        logging.getLogger("vertex.entrypoint").info("key %s", TOKEN)
    assert TOKEN not in caplog.text
    assert MASK in caplog.text
