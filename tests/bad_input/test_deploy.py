"""`deploy_flow` arguments: entrypoints, names, parameters, tags, schedules, job, src."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from oxeo_flows import deploy_flow
from oxeo_flows.errors import ConfigError, DeployError
from tests.bad_input._expect import cases, expect

FORM = "'path/to/file.py:flow_function'"


@pytest.fixture(autouse=True)
def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project with one flow; any Prefect call would fail fast (nothing listens on :9)."""
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    (tmp_path / "f.py").write_text(
        "from prefect import flow\n\n@flow\ndef f(date: str = 'x'):\n    pass\n\n"
        "def plain():\n    pass\n"
    )
    (tmp_path / "broken.py").write_text("def broken(:\n")
    (tmp_path / "latin1.py").write_bytes(b"\xff\xfe = 1\n")
    (tmp_path / "pkg.py").mkdir()


def _deploy(**kwargs: object) -> object:
    args = {"entrypoint": "f.py:f", "name": "bad-input", "dry_run": True, **kwargs}
    return lambda: deploy_flow(**args)


CONFIG_CASES = [
    ("entry-empty", _deploy(entrypoint=""), "entrypoint ''", FORM),
    ("entry-no-colon", _deploy(entrypoint="f.py"), "entrypoint 'f.py'", FORM),
    ("entry-no-function", _deploy(entrypoint="f.py:"), "entrypoint 'f.py:'", FORM),
    ("entry-no-file", _deploy(entrypoint=":f"), "entrypoint ':f'", "'flows/extract.py:extract'"),
    ("entry-int", _deploy(entrypoint=3), "entrypoint 3", FORM),
    (
        "entry-missing-file",
        _deploy(entrypoint="nope.py:f"),
        "'nope.py' does not exist",
        "give the flow's .py file",
    ),
    (
        "entry-directory",
        _deploy(entrypoint="pkg.py:f"),
        "'pkg.py' is a directory",
        "give the flow's .py file",
    ),
    (
        "entry-outside-project",
        _deploy(entrypoint="/etc/hostname:f"),
        "/etc/hostname",
        "outside the project directory",
    ),
    ("name-empty", _deploy(name=""), "deployment name ''", "must be non-empty"),
    ("name-whitespace", _deploy(name="  "), "deployment name", "must be non-empty"),
    ("name-slash", _deploy(name="a/b"), "deployment name 'a/b'", "contain no '/'"),
    ("name-int", _deploy(name=3), "deployment name 3", "must be non-empty"),
    ("params-list", _deploy(parameters=[1]), "parameters", "parameters={'date': '2026-01-01'}"),
    ("params-int-keys", _deploy(parameters={1: "x"}), "non-string keys", "parameter name"),
    (
        "params-unknown",
        _deploy(parameters={"zz": 1}),
        "no parameter 'zz'",
        "its parameters are: date",
    ),
    ("params-typo", _deploy(parameters={"dat": "1"}), "'dat'", "did you mean 'date'?"),
    ("tags-string", _deploy(tags="nightly"), "tags", "a single string is not split"),
    ("tags-int", _deploy(tags=[1]), "tags", "tags=['nightly']"),
    ("tags-empty", _deploy(tags=[""]), "tags", "non-empty strings"),
    ("description-int", _deploy(description=3), "description", "must be a string"),
    ("cron-minute-61", _deploy(schedule="61 * * * *"), "'61 * * * *'", "'0 6 * * *'"),
    ("cron-words", _deploy(schedule="daily"), "'daily'", "MINUTE HOUR DAY-OF-MONTH"),
    ("interval-negative", _deploy(schedule=-5), "schedule interval", "positive, finite"),
    ("interval-zero", _deploy(schedule=dt.timedelta(0)), "schedule interval", "positive"),
    ("interval-nan", _deploy(schedule=float("nan")), "schedule interval", "finite number"),
    ("interval-inf", _deploy(schedule=float("inf")), "schedule interval", "finite number"),
    ("interval-huge", _deploy(schedule=10**12), "schedule interval", "at most 31622400"),
    ("schedule-bool", _deploy(schedule=True), "schedule", "a cron string ('0 6 * * *')"),
    ("schedule-list", _deploy(schedule=["0 6 * * *"]), "got list", "or a Prefect schedule"),
    ("job-int", _deploy(job=3), "job for a 'process' pool", "dict of job variables"),
    ("src-missing", _deploy(src="nope"), "does not exist", "give src= the directory"),
    ("src-is-file", _deploy(src="f.py"), "is a file", "give src= the directory"),
    ("stack-unknown", _deploy(stack="prdo"), "Unknown stack 'prdo'", "defines: local"),
]


@pytest.mark.parametrize(("call", "field", "fix"), cases(CONFIG_CASES))
def test_bad_deploy_argument(call, field: str, fix: str) -> None:
    expect(ConfigError, call, field, fix)


DEPLOY_CASES = [
    (
        "function-not-a-flow",
        _deploy(entrypoint="f.py:plain"),
        "'plain' is not a flow",
        "decorated with '@flow'",
    ),
    ("function-missing", _deploy(entrypoint="f.py:g"), "'g' not found", "f.py"),
    ("syntax-error", _deploy(entrypoint="broken.py:f"), "broken.py", "SyntaxError"),
    ("non-utf8-source", _deploy(entrypoint="latin1.py:f"), "latin1.py", "can't decode"),
]


@pytest.mark.parametrize(("call", "field", "fix"), cases(DEPLOY_CASES))
def test_unloadable_flow(call, field: str, fix: str) -> None:
    expect(DeployError, call, field, fix)
