"""Canary values must never show in logs, exceptions, reprs or stored deployments."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from oxeo_flows import SecretAccessError, SecretNotFoundError
from oxeo_flows._redact import MASK
from oxeo_flows.secrets import load_secret, resolve_secret

CANARY = "canary-" + uuid.uuid4().hex


def test_prefect_loggers_mask_loaded_values(monkeypatch, caplog) -> None:
    from prefect.logging import get_logger

    monkeypatch.setenv("CANARY_TOKEN", CANARY)
    existing = get_logger("existing")
    value = load_secret("canary-token")
    created_later = get_logger("created.later")  # a prefect.* logger made after the load
    with caplog.at_level(logging.INFO):
        existing.warning("token is %s", value.get_secret_value())
        created_later.warning(f"inline {value.get_secret_value()} here")
        logging.getLogger("prefect").error("root prefect %s", value.get_secret_value())
        try:
            raise RuntimeError(f"failure with {value.get_secret_value()}")
        except RuntimeError:
            existing.exception("it failed")
    text = caplog.text
    assert CANARY not in text
    assert text.count(MASK) >= 4
    for record in caplog.records:
        assert CANARY not in record.getMessage()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_flow_run_logger_masks_loaded_values(prefect_api: str, monkeypatch, capfd) -> None:
    from prefect import flow, get_run_logger

    monkeypatch.setenv("CANARY_FLOW", CANARY)
    collect = _Collect()

    @flow
    def leaky_flow() -> str:
        secret = load_secret("canary-flow")
        logger = get_run_logger()
        logging.getLogger("prefect.flow_runs").addHandler(collect)
        logger.info("the secret is %s", secret.get_secret_value())
        return repr(secret)

    try:
        shown = leaky_flow()
    finally:
        logging.getLogger("prefect.flow_runs").removeHandler(collect)
    out, err = capfd.readouterr()
    assert CANARY not in shown
    assert CANARY not in out + err
    assert any(line.endswith(f"the secret is {MASK}") for line in collect.lines)
    assert not any(CANARY in line for line in collect.lines)


def test_reprs_and_errors_never_hold_values(monkeypatch, stack_file) -> None:
    monkeypatch.setenv("CANARY_REPR", CANARY)
    loaded = resolve_secret("canary-repr")
    assert CANARY not in repr(loaded)
    assert CANARY not in str(loaded)
    assert CANARY not in repr(loaded.value)
    assert CANARY not in f"{loaded.value}"
    with pytest.raises(SecretNotFoundError) as info:
        load_secret("canary-repr-missing", sources=["env"])
    assert CANARY not in str(info.value)
    assert CANARY not in repr(info.value)


def test_json_field_errors_do_not_show_values(moto: str, stack_file) -> None:
    import boto3

    sm = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto)
    sm.create_secret(Name="structured", SecretString=json.dumps({"password": CANARY}))
    sm.create_secret(Name="plain", SecretString=CANARY)
    stack_file('[tool.oxeo-flows.stacks.local]\naws.region = "eu-west-1"\n')
    with pytest.raises(SecretNotFoundError) as missing:
        load_secret("aws://structured#user")
    assert CANARY not in str(missing.value)
    with pytest.raises(SecretAccessError) as not_json:
        load_secret("aws://plain#user")
    assert CANARY not in str(not_json.value)


def test_deployment_stores_names_not_values(prefect_api: str, monkeypatch) -> None:
    """Secret names (and a carelessly passed SecretStr) reach the API; values never do."""
    from prefect.client.orchestration import get_client

    monkeypatch.setenv("GITHUB_DEPLOY_KEY", CANARY)
    secret = load_secret("github-deploy-key")  # loaded in this process, as a deploy script might
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("stored-flow")
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name=f"leak-check-{uuid.uuid4().hex[:6]}",
            entrypoint="flows/x.py:stored_flow",
            job_variables={
                "env": {"OXEO_FLOWS_SECRETS__SOURCES": "gcp,env", "CARELESS": str(secret)}
            },
            pull_steps=[
                {
                    "oxeo_flows.steps.git_clone_ssh": {
                        "repository": "git@github.com:oxeo/pipelines.git",
                        "ssh_key_secret": "github-deploy-key",
                    }
                }
            ],
        )
        stored = client.read_deployment(deployment_id)
    dumped = stored.model_dump_json()
    assert "github-deploy-key" in dumped
    assert stored.job_variables["env"]["CARELESS"] == MASK
    assert CANARY not in dumped


def test_log_filter_is_installed_once(monkeypatch) -> None:
    from oxeo_flows.secrets import install_log_filter
    from oxeo_flows.secrets._logging import SecretMaskingFilter

    monkeypatch.setenv("FILTER_ONE", "filter-one-value")
    monkeypatch.setenv("FILTER_TWO", "filter-two-value")
    load_secret("filter-one")
    load_secret("filter-two")
    install_log_filter()
    logging.getLogger("prefect.brand.new")  # a new logger forces a rescan
    install_log_filter()
    names = ["prefect"] + [
        n
        for n, obj in logging.Logger.manager.loggerDict.items()
        if n.startswith("prefect.") and isinstance(obj, logging.Logger)
    ]
    assert "prefect.brand.new" in names
    for name in names:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, SecretMaskingFilter) for f in filters) == 1, name
