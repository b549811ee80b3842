"""Canary values must never show in logs, exceptions, reprs or stored deployments."""

from __future__ import annotations

import json
import logging
import time
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


# ----------------------------------------------------------------------------- Prefect states


def _dump_run(client, flow_run_id) -> str:  # type: ignore[no-untyped-def]
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    parts = [client.read_flow_run(flow_run_id).model_dump_json()]
    parts += [s.model_dump_json() for s in client.read_flow_run_states(flow_run_id)]
    runs = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    )
    for run in runs:
        parts.append(run.model_dump_json())
        parts += [s.model_dump_json() for s in client.read_task_run_states(run.id)]
    logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    parts += [log.model_dump_json() for log in logs]
    return "\n".join(parts)


def test_failed_flow_and_task_states_hold_no_secret(
    prefect_api: str, monkeypatch, tmp_path
) -> None:
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    monkeypatch.setenv("CANARY_STATE", CANARY)
    storage = tmp_path / "results"
    monkeypatch.setenv("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(storage))

    @task
    def leaky_task(token: str) -> None:
        raise ValueError(f"bad token {token}")

    @flow
    def leaky_state_flow() -> None:
        token = load_secret("canary-state").get_secret_value()
        leaky_task(token)

    with temporary_settings({PREFECT_LOGGING_TO_API_ENABLED: True}):
        state = leaky_state_flow(return_state=True)
    assert state.is_failed()
    assert CANARY not in (state.message or "")
    assert MASK in (state.message or "")
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        # Task-run states and logs reach the server asynchronously (events, log batches).
        for _ in range(300):
            dumped = _dump_run(client, flow_run_id)
            if "Task run encountered an exception" in dumped and "Finished in state" in dumped:
                break
            time.sleep(0.1)
        stored = client.read_flow_run(flow_run_id).state
    assert "Task run encountered an exception" in dumped  # the task's Failed state
    assert "Flow run encountered an exception" in dumped  # the flow's Failed state
    assert "Finished in state" in dumped  # logs stored on the server
    assert dumped.count(MASK) >= 3
    assert CANARY not in dumped
    error = stored.result(raise_on_failure=False)  # the exception, read back from storage
    assert isinstance(error, ValueError)
    assert str(error) == f"bad token {MASK}"
    persisted = [p for p in storage.rglob("*") if p.is_file()]
    assert persisted  # the exception was persisted as the flow run's result...
    for path in persisted:  # ...masked
        assert CANARY.encode() not in path.read_bytes()


class _TokenError(Exception):
    """An exception whose text comes from an attribute, not from its args."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def __str__(self) -> str:
        return f"refused {self.token}"


def test_states_are_masked_without_any_log_record(prefect_api: str, monkeypatch) -> None:
    """With Prefect's loggers silenced, no log record masks the exception first: the state
    hook alone must keep the value out (also from a custom ``__str__``)."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client

    monkeypatch.setenv("CANARY_QUIET", CANARY)
    prefect_logger = logging.getLogger("prefect")
    monkeypatch.setattr(prefect_logger, "disabled", True)

    @task
    def quiet_task(token: str) -> None:
        raise _TokenError(token)

    @flow
    def quiet_flow() -> None:
        quiet_task(load_secret("canary-quiet").get_secret_value())

    state = quiet_flow(return_state=True)
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        for _ in range(300):
            dumped = _dump_run(client, flow_run_id)
            if "Task run encountered an exception" in dumped:
                break
            time.sleep(0.1)
    assert "Task run encountered an exception" in dumped
    assert "_TokenError: refused **********" in dumped
    assert CANARY not in dumped
    assert CANARY not in (state.message or "")


# ----------------------------------------------------------------------------- every logger


def _secret_parts(value: str) -> list[str]:
    """The parts of a value that must not show: the value and each non-armor line of it."""
    lines = [line for line in value.splitlines() if line and not line.startswith("-----")]
    return [value, *lines]


def _leaks(text: str, value: str) -> list[str]:
    return [part for part in _secret_parts(value) if part in text]


class _Everything(logging.Handler):
    """Records formatted as text plus every attribute (as a JSON formatter would show them)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        attrs = {k: repr(v) for k, v in record.__dict__.items() if k != "exc_info"}
        self.texts.append(self.format(record) + "\n" + json.dumps(attrs))

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


@pytest.fixture
def root_debug(monkeypatch):  # type: ignore[no-untyped-def]
    """The root logger at DEBUG with a handler that was there before any secret was loaded."""
    root = logging.getLogger()
    before = _Everything()
    monkeypatch.setattr(root, "level", logging.DEBUG)
    root.addHandler(before)
    logging.Logger.manager._clear_cache()  # isEnabledFor answers are cached per logger
    yield before
    root.removeHandler(before)
    monkeypatch.undo()
    logging.Logger.manager._clear_cache()


def test_botocore_debug_body_is_masked(moto: str, stack_file, root_debug, monkeypatch) -> None:
    """botocore logs ``Response body: b'{... "SecretString": "..."}'`` at DEBUG while the
    value is fetched (before it is known), and again on every later read by user code."""
    import boto3

    from tests.secrets._keys import rsa_pem

    key = rsa_pem()
    structured = json.dumps({"user": "svc", "password": CANARY})
    sm = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto)
    sm.create_secret(Name="pem", SecretString=key)
    sm.create_secret(Name="structured", SecretString=structured)
    root_debug.texts.clear()  # creating them logged the values: that was before any load
    for name in [*logging.Logger.manager.loggerDict, "botocore", "urllib3"]:
        if name.split(".")[0] in ("botocore", "urllib3"):  # Prefect's dictConfig disables them
            monkeypatch.setattr(logging.getLogger(name), "disabled", False)
            monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    monkeypatch.setattr(logging.getLogger("botocore"), "level", logging.DEBUG)
    logging.Logger.manager._clear_cache()
    stack_file('[tool.oxeo-flows.stacks.local]\naws.region = "eu-west-1"\n')
    assert load_secret("aws://pem").get_secret_value() == key
    assert load_secret("aws://structured#user").get_secret_value() == "svc"
    after = _Everything()  # a handler added after the load
    logging.getLogger().addHandler(after)
    try:
        sm.get_secret_value(SecretId="pem")  # user code reading it again with boto3
        sm.get_secret_value(SecretId="structured")
        logging.getLogger("urllib3.connectionpool").debug("url /?k=%s", CANARY)
        logging.getLogger().warning("root %r", {"key": key})
    finally:
        logging.getLogger().removeHandler(after)
    assert "Response body" in root_debug.text
    assert '"SecretString"' in root_debug.text
    for sink in (root_debug.text, after.text):
        assert _leaks(sink, key) == []
        assert CANARY not in sink
    assert MASK in after.text


def test_secret_manager_grpc_debug_payload_is_masked(fake_sm, gcp_stack, monkeypatch) -> None:
    """The Secret Manager gRPC transport logs the response payload in ``extra`` at DEBUG (to
    the non-propagating ``google`` logger, as GOOGLE_SDK_PYTHON_LOGGING_SCOPE sets it up)."""
    import base64

    from tests.secrets._keys import rsa_pem
    from tests.secrets.conftest import PROJECT

    google = logging.getLogger("google")
    handler = _Everything()
    monkeypatch.setattr(google, "level", logging.DEBUG)
    monkeypatch.setattr(google, "propagate", False)
    monkeypatch.setattr(google, "handlers", [handler])
    gcp_stack()
    key = rsa_pem()
    fake_sm.add(PROJECT, "pem", key)
    assert load_secret("pem").get_secret_value() == key
    text = handler.text
    assert "Received response" in text  # the payload was logged, masked
    assert _leaks(text, key) == []
    assert base64.b64encode(key.encode()).decode() not in text


def test_distributed_and_stdlib_loggers_mask(monkeypatch, root_debug) -> None:
    import io

    import distributed  # noqa: F401

    # distributed's logging config: its own stream handler, not propagating to the root.
    dask_logger = logging.getLogger("distributed")
    dask_stream = io.StringIO()
    monkeypatch.setattr(dask_logger, "handlers", [logging.StreamHandler(dask_stream)])
    monkeypatch.setattr(dask_logger, "propagate", False)
    monkeypatch.setenv("CANARY_LOGGERS", CANARY)
    value = load_secret("canary-loggers").get_secret_value()
    late = logging.getLogger("late.library")
    late_handler = _Everything()
    late.addHandler(late_handler)  # a handler on a logger created after the load
    try:
        logging.getLogger("distributed.worker").warning("worker got %s", value)
        logging.getLogger("google.auth").debug(f"token {value}")
        logging.getLogger("grpc._channel").debug("metadata %s", [("x", value)])
        late.error("late %s", value, extra={"detail": {"token": value}})
        logging.getLogger("prefect.any").info("prefect %s", value)
        try:
            raise RuntimeError(f"wrapped {value}")
        except RuntimeError:
            logging.getLogger("some.lib").exception("boom")
        logging.getLogger("some.lib").info("stack", stack_info=True, extra={"v": value})
        # distributed forwards worker logs to the client as dicts rebuilt with makeLogRecord,
        # which bypasses the record factory: the handler's filter masks them.
        rebuilt = logging.makeLogRecord(
            {
                "name": "distributed.worker",
                "levelno": 30,
                "levelname": "WARNING",
                "msg": f"forwarded {value}",
                "args": (),
            }
        )
        root_debug.handle(rebuilt)
    finally:
        late.removeHandler(late_handler)
    dask_text = dask_stream.getvalue()
    assert f"worker got {MASK}" in dask_text  # distributed's own handler
    for sink in (root_debug.text, late_handler.text, dask_text):
        assert CANARY not in sink
    assert f"forwarded {MASK}" in root_debug.text
    assert root_debug.text.count(MASK) >= 7


def test_pickled_errors_hold_no_value(monkeypatch) -> None:
    """Exceptions that held a loaded value pickle masked (as Prefect persists them); our own
    errors and the reprs of loaded secrets never held it. (A pickled ``SecretStr`` itself
    carries its value: it must, to be usable where it is unpickled.)"""
    import pickle

    from oxeo_flows._redact import redact_exception

    monkeypatch.setenv("CANARY_PICKLE", CANARY)
    loaded = resolve_secret("canary-pickle")
    error = RuntimeError(f"failed with {loaded.value.get_secret_value()}")
    assert CANARY.encode() not in pickle.dumps(redact_exception(error))
    with pytest.raises(SecretNotFoundError) as missing:
        load_secret("canary-pickle-missing", sources=["env"])
    assert CANARY.encode() not in pickle.dumps(missing.value)
    assert CANARY.encode() not in pickle.dumps(repr(loaded))


def test_state_functions_wrapped_when_prefect_is_imported_after_the_load(tmp_path) -> None:
    """A secret loaded before Prefect is imported: the import hook wraps Prefect's
    exception-to-state functions when their modules are first executed."""
    import os
    import subprocess
    import sys

    script = """
import sys
from oxeo_flows import load_secret
load_secret("early-token", sources=["env"])
assert "prefect.states" not in sys.modules
import prefect.flow_engine, prefect.task_engine, prefect.states, prefect._internal.states as s
mark = "__oxeo_flows_redacts__"
for f in (prefect.flow_engine.exception_to_failed_state,
          prefect.flow_engine.exception_to_crashed_state,
          prefect.task_engine.exception_to_failed_state_sync,
          prefect.task_engine.exception_to_crashed_state_sync,
          prefect.states.exception_to_failed_state, s.exception_to_failed_state_sync):
    assert getattr(f, mark, False), f
print("wrapped")
"""
    env = {**os.environ, "EARLY_TOKEN": CANARY, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "wrapped" in done.stdout


class _Abort(BaseException):
    """Not an Exception: Prefect reports the run as Crashed, with the exception's text."""


def test_crashed_state_holds_no_secret(prefect_api: str, monkeypatch) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    monkeypatch.setenv("CANARY_CRASH", CANARY)

    @flow
    def crashing_flow() -> None:
        raise _Abort(f"aborted with {load_secret('canary-crash').get_secret_value()}")

    with pytest.raises(_Abort) as raised:
        crashing_flow()
    assert CANARY not in str(raised.value)  # masked in place: the caller sees the mask too
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["crashing-flow"]))
        )
        run = next(r for r in runs if r.state and r.state.is_crashed())
        dumped = _dump_run(client, run.id)
    assert "Execution was interrupted by an unexpected exception" in dumped
    assert f"aborted with {MASK}" in dumped
    assert CANARY not in dumped
