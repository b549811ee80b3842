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
