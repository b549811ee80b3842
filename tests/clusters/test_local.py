"""The ``local`` backend on the real Prefect server; runner settings survive duplicate/pickle."""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle
import pytest
from prefect import flow, task

from oxeo_flows import ConfigError, dask_runner


@task
def inc(x: int) -> int:
    return x + 1


@task
def worker_count() -> int:
    from distributed import get_client

    return len(get_client().scheduler_info()["workers"])


def test_local_flow_runs_on_the_prefect_server(prefect_api: str) -> None:
    @flow(task_runner=dask_runner("local"))
    def incs(n: int) -> list[int]:
        return inc.map(range(n)).result()

    state = incs(6, return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == [1, 2, 3, 4, 5, 6]


def test_cluster_is_sized_from_the_flow_parameters(prefect_api: str) -> None:
    runner = dask_runner("local", n_workers=1, parameters={"n_workers": "workers"})

    @flow(task_runner=runner)
    def sized(workers: int = 1) -> int:
        return worker_count.submit().result()

    assert sized(workers=3) == 3
    assert sized() == 1


def test_bad_parameter_value_fails_the_flow(prefect_api: str) -> None:
    @flow(task_runner=dask_runner("local", parameters={"n_workers": "workers"}))
    def sized(workers: Any = 1) -> int:
        return worker_count.submit().result()

    state = sized(workers="many", return_state=True)
    assert state.is_failed()
    with pytest.raises(ConfigError, match="non-negative integer"):
        state.result()


def test_duplicate_keeps_our_settings() -> None:
    runner = dask_runner(
        "local", start_timeout=7, adapt=(1, 3), parameters={"adapt_max": "most"}, n_workers=2
    )
    copy = runner.duplicate()
    assert type(copy) is type(runner)
    assert copy == runner
    assert (copy.start_timeout, copy.parameters, copy.adapt_kwargs) == (
        7,
        {"adapt_max": "most"},
        {"minimum": 1, "maximum": 3},
    )
    assert copy.cluster_kwargs["n_workers"] == 2


def test_runner_pickles_by_reference() -> None:
    from prefect_dask import DaskTaskRunner

    runner = dask_runner("local", start_timeout=9)
    assert isinstance(runner, DaskTaskRunner)
    data = cloudpickle.dumps(runner)
    # By reference: the class and the cluster factory are named, not serialised.
    assert b"oxeo_flows.clusters.runner" in data
    assert b"OxeoDaskTaskRunner" in data
    back = pickle.loads(data)
    assert back == runner
    assert back.start_timeout == 9


def _listening() -> set[tuple[int, str, int]]:
    """(pid, ip, port) of every listening TCP socket of this process and its children."""
    import psutil

    me = psutil.Process()
    out = set()
    for proc in [me, *me.children(recursive=True)]:
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                out.add((proc.pid, conn.laddr.ip, conn.laddr.port))
    return out


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"n_workers": 2}, {"processes": True, "n_workers": 1, "threads_per_worker": 1}],
    ids=["threads", "two-workers", "processes"],
)
def test_local_cluster_listens_on_loopback_only(kwargs: dict[str, Any]) -> None:
    # Dask's defaults serve the dashboard on 0.0.0.0:8787 and [::]:8787, and the workers'
    # HTTP servers on every interface too.
    import ipaddress

    from oxeo_flows.clusters.local import local_cluster

    before = _listening()
    cluster = local_cluster(**kwargs)
    try:
        opened = _listening() - before
        assert opened  # the scheduler's HTTP server at least
        exposed = [s for s in opened if not ipaddress.ip_address(s[1]).is_loopback]
        assert exposed == []
    finally:
        cluster.close()


def test_dashboard_is_off_by_default_and_loopback_when_asked() -> None:
    import httpx

    from oxeo_flows.clusters.local import local_cluster

    for kwargs, status in (({}, 404), ({"dashboard_address": "127.0.0.1:0"}, 200)):
        cluster = local_cluster(**kwargs)
        try:
            port = cluster.scheduler_info["services"]["dashboard"]
            base = f"http://127.0.0.1:{port}"
            assert httpx.get(f"{base}/health", timeout=10).status_code == 200
            # Without bokeh, an enabled dashboard answers with a page saying to install it.
            assert httpx.get(f"{base}/status", timeout=10).status_code == status
        finally:
            cluster.close()


@pytest.mark.parametrize("address", [":8787", "0.0.0.0:8787", "[::]:8787", "10.0.0.5:8787", "x"])
def test_dashboard_beyond_loopback_is_refused(address: str) -> None:
    from oxeo_flows.clusters.local import local_cluster

    with pytest.raises(ConfigError, match=r"use a loopback address such as '127\.0\.0\.1:8787'"):
        local_cluster(dashboard_address=address)
