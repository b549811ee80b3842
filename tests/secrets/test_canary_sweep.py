"""Canary sweep over every sink (issue 14 item 6): one loaded value, looked for everywhere.

A flow loads a canary from the environment and from Secrets Manager (moto), logs it, prints
it, fails a task and itself with it, and tries to store it in a work pool and a block. Then
the canary must appear 0 times in: DEBUG records of every logger (root capture, so botocore,
urllib3, google, distributed and prefect alike), every object the real Prefect test server
holds (flow runs and their states, task runs, logs, deployments, work pools, blocks,
variables, artifacts), pickles of runners, blocks, specs and errors, and CLI output.
Temp files after SIGTERM/SIGKILL are covered by test_ssh_signals.py; VM configs by the TLS
tests.
"""

from __future__ import annotations

import logging
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oxeo_flows.errors import ConfigError
from tests.cli._run import run_cli
from tests.secrets.test_leaks import _Everything

CANARY = "canarysweep" + uuid.uuid4().hex
AWS_CANARY = "awscanary" + uuid.uuid4().hex


@pytest.fixture
def aws_canary(moto: str) -> str:
    """The AWS canary, created in moto before any log is captured (the test's own call)."""
    import boto3

    boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name="canary-sweep-aws", SecretString=AWS_CANARY
    )
    return "canary-sweep-aws"


@pytest.fixture
def everything(aws_canary: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Everything]:
    """Root at DEBUG, every named logger let through, one handler that sees all of it."""
    from prefect.logging.configuration import setup_logging

    setup_logging()  # Prefect's dictConfig runs once per process: let it run before we attach
    root = logging.getLogger()
    handler = _Everything()
    monkeypatch.setattr(root, "level", logging.DEBUG)
    for name in (
        "botocore",
        "boto3",
        "urllib3",
        "google",
        "grpc",
        "distributed",
        "httpx",
        "httpcore",
        "prefect",
        "oxeo_flows",
    ):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "level", logging.DEBUG)
        monkeypatch.setattr(logger, "disabled", False)
    root.addHandler(handler)
    logging.Logger.manager._clear_cache()
    yield handler
    root.removeHandler(handler)
    monkeypatch.undo()
    logging.Logger.manager._clear_cache()


def _count(text: str) -> int:
    return text.count(CANARY) + text.count(AWS_CANARY)


def _api_dump() -> str:
    """Every object of the Prefect API this test can list, as JSON text."""
    from prefect.client.orchestration import get_client

    parts: list[str] = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
        for run in runs:
            parts.append(run.model_dump_json())
            parts += [s.model_dump_json() for s in client.read_flow_run_states(run.id)]
        parts += [t.model_dump_json() for t in client.read_task_runs(limit=200)]
        parts += [d.model_dump_json() for d in client.read_deployments(limit=200)]
        parts += [p.model_dump_json() for p in client.read_work_pools()]
        parts += [b.model_dump_json() for b in client.read_block_documents(include_secrets=False)]
        parts += [v.model_dump_json() for v in client.read_variables()]
        parts += [a.model_dump_json() for a in client.read_artifacts()]
        parts += [log.model_dump_json() for log in client.read_logs()]
    return "\n".join(parts)


def test_canary_in_no_log_no_api_object_no_pickle(
    prefect_api: str, everything: _Everything, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow, get_run_logger, task

    import oxeo_flows as of

    monkeypatch.setenv("CANARY_SWEEP_ENV", CANARY)
    monkeypatch.setenv("SWEEP_CA", CANARY + "-ca")
    refusals: list[str] = []

    @task
    def sweep_leaky_task(value: str) -> None:
        raise ValueError(f"task failed with {value}")

    @flow(log_prints=True)
    def sweep_canary_flow() -> None:
        env = of.load_secret("canary-sweep-env", sources=["env"]).get_secret_value()
        aws = of.load_secret("aws://canary-sweep-aws", sources=["aws"]).get_secret_value()
        logger = get_run_logger()
        logger.info("env %s aws %s", env, aws)
        print(f"printed {env}")
        for name in ("urllib3", "google.auth", "distributed.worker", "botocore", "myapp"):
            logging.getLogger(name).debug("debug %s / %s", env, aws)
        for store in (
            lambda: of.ensure_pool(
                "sweep-canary-pool", type="process", defaults={"env": {"TOKEN": env}}
            ),
            lambda: of.ensure_docker_pool(
                "sweep-canary-docker", job=of.DockerJob(env={"TOKEN": aws})
            ),
            lambda: of.ensure_block(
                of.s3_bucket("sweep-bucket", folder=f"x{env}"), "sweep-canary-block"
            ),
            lambda: of.ensure_pool(
                "sweep-canary-desc", type="process", defaults={}, description=f"token {aws}"
            ),
        ):
            try:
                store()
            except ConfigError as exc:
                refusals.append(str(exc))
        sweep_leaky_task.submit(env).wait()
        raise RuntimeError(f"flow failed with {env} and {aws}")

    state = sweep_canary_flow(return_state=True)
    assert state.is_failed()
    assert len(refusals) == 4, refusals  # each store was refused, naming the field
    assert all("holds a secret value loaded with load_secret" in r for r in refusals)
    assert _count("\n".join(refusals)) == 0

    logs = "\n".join(everything.texts)
    assert "botocore" in logs  # the capture really saw the SDK's DEBUG records
    leaked = [t[:600] for t in everything.texts if _count(t)]
    assert leaked == []

    dump = _api_dump()
    assert "flow failed with" in dump  # the sweep sees this run's state message (masked)
    assert _count(dump) == 0

    runner = of.dask_runner(
        "address",
        address="tls://127.0.0.1:1",
        tls={"ca_secret": "sweep-ca", "cert_secret": "sweep-ca", "key_secret": "sweep-ca"},
    )
    objects: list[Any] = [
        state,
        runner,
        of.dask_runner("local"),
        of.DockerJob(env={"TOKEN_SECRET": "canary-sweep-env"}),
        of.s3_bucket("sweep-bucket"),
        of.aws_credentials(),
        RuntimeError("x"),
        *[ConfigError(r) for r in refusals],
    ]
    for obj in objects:
        assert _count(str(pickle.dumps(obj))) == 0, type(obj).__name__


@pytest.mark.parametrize(
    ("argv", "reveal"),
    [
        (["secrets", "get", "canary-cli"], False),
        (["secrets", "get", "env://CANARY_CLI"], False),
        (["secrets", "check"], False),
        (["stack", "show", "--json"], False),
        (["stack", "show"], False),
        (["secrets", "get", "canary-cli", "--reveal"], True),
    ],
    ids=["get", "get-ref", "check", "show-json", "show", "get-reveal"],
)
def test_cli_output_holds_no_canary(tmp_path: Path, argv: list[str], reveal: bool) -> None:
    env = {
        "CANARY_CLI": CANARY,
        "OXEO_FLOWS_SECRETS__SOURCES": '["env"]',
        "OXEO_FLOWS_SECRETS__REQUIRED": '["canary-cli"]',
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
    }
    result = run_cli(*argv, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert CANARY not in result.stderr
    # --reveal prints the value alone on stdout, as asked; nothing else ever does.
    assert result.stdout.count(CANARY) == (1 if reveal else 0)
    if reveal:
        assert result.stdout.strip() == CANARY
