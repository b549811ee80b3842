"""The ``address`` backend on the real Prefect server: TLS from files and secrets, deadlines."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prefect import flow, task

from oxeo_flows import ClusterStartTimeout, dask_runner
from tests.clusters.conftest import SilentServer, flow_run_state


@task
def square(x: int) -> int:
    return x * x


def _run(runner: Any, n: int = 5) -> Any:
    @flow(task_runner=runner)
    def squares(n: int) -> int:
        return sum(square.map(range(n)).result())

    return squares(n, return_state=True)


def test_tls_address_from_files_runs_end_to_end(
    prefect_api: str, tls_cluster: str, tls_files: dict[str, str]
) -> None:
    runner = dask_runner(
        "address",
        address=tls_cluster,
        tls={
            "ca_file": tls_files["ca"],
            "cert_file": tls_files["cert"],
            "key_file": tls_files["key"],
        },
        start_timeout=10,
    )
    state = _run(runner)
    assert state.is_completed(), state.message
    assert state.result() == sum(x * x for x in range(5))


def test_tls_address_from_secrets_runs_end_to_end(
    prefect_api: str,
    tls_cluster: str,
    tls_material: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DASK_TLS_CA", tls_material["ca"])
    monkeypatch.setenv("DASK_TLS_CERT", tls_material["cert"])
    monkeypatch.setenv("DASK_TLS_KEY", tls_material["key"])
    runner = dask_runner(
        "address",
        address=tls_cluster,
        tls={
            "ca_secret": "dask-tls-ca",
            "cert_secret": "dask-tls-cert",
            "key_secret": "dask-tls-key",
        },
        start_timeout=10,
    )
    # The runner carries secret names, never the material (it is pickled with every task).
    assert tls_material["key"] not in repr(vars(runner))
    state = _run(runner, 4)
    assert state.is_completed(), state.message
    assert state.result() == 14


def test_stack_configures_the_address_backend(
    prefect_api: str, tls_cluster: str, tls_files: dict[str, str], stack_file: Any
) -> None:
    stack_file(
        f"""
[tool.oxeo-flows.stacks.local.dask]
backend = "address"
address = "{tls_cluster}"
start-timeout = 10
[tool.oxeo-flows.stacks.local.dask.tls]
ca-file = "{tls_files["ca"]}"
cert-file = "{tls_files["cert"]}"
key-file = "{tls_files["key"]}"
"""
    )
    runner = dask_runner()
    assert runner.address == tls_cluster
    state = _run(runner, 3)
    assert state.is_completed(), state.message


def _assert_fast_timeout(runner: Any, deadline: float, expect: str) -> ClusterStartTimeout:
    started = time.monotonic()
    state = _run(runner, 2)
    elapsed = time.monotonic() - started
    assert state.is_failed()
    with pytest.raises(ClusterStartTimeout) as info:
        state.result()
    message = str(info.value)
    assert expect in message
    assert "tcp:8786-8787" in message
    assert "route" in message
    # The flow run stored in the server is Failed, with our message.
    stored = flow_run_state(state.state_details.flow_run_id)
    assert stored.is_failed()
    assert "did not answer within the start deadline" in (stored.message or "")
    # Flow bookkeeping adds a little; the deadline itself must hold within 1 s.
    assert elapsed < deadline + 1 + 3, elapsed
    return info.value


@pytest.mark.parametrize("scheme", ["tcp", "tls"])
def test_silent_peer_fails_within_the_deadline(
    prefect_api: str, silent_server: SilentServer, tls_files: dict[str, str], scheme: str
) -> None:
    address = f"{scheme}://127.0.0.1:{silent_server.port}"
    tls = (
        {"ca_file": tls_files["ca"], "cert_file": tls_files["cert"], "key_file": tls_files["key"]}
        if scheme == "tls"
        else None
    )
    runner = dask_runner(
        "address",
        address=address,
        start_timeout=1.5,
        **({"tls": tls} if tls else {"plaintext": True}),
    )
    started = time.monotonic()
    with pytest.raises(ClusterStartTimeout) as info, runner.duplicate() as started_runner:
        started_runner.client  # noqa: B018 - the connect is the point
    assert time.monotonic() - started < 1.5 + 1
    assert address in str(info.value)
    assert "internal (private) address" in str(info.value)
    assert silent_server.accepted, "the peer was really dialed"
    _assert_fast_timeout(runner, 1.5, address)


def test_refused_port_fails_within_the_deadline(prefect_api: str, refused_port: int) -> None:
    address = f"tcp://127.0.0.1:{refused_port}"
    runner = dask_runner("address", address=address, start_timeout=1, plaintext=True)
    started = time.monotonic()
    with pytest.raises(ClusterStartTimeout), runner.duplicate() as started_runner:
        started_runner.client  # noqa: B018
    assert time.monotonic() - started < 1 + 1
    _assert_fast_timeout(runner, 1, address)
