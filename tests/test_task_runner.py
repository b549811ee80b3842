"""The local Dask backend and the fast-submit runner, on a real Prefect server."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any
from uuid import uuid4

import pytest
from prefect import flow, task
from prefect.context import serialize_context
from prefect.settings import PREFECT_API_URL, PREFECT_TASKS_DEFAULT_RETRIES, temporary_settings
from prefect_dask import DaskTaskRunner

from oxeo_flows import dask_runner
from oxeo_flows._task_runner import fast_submit_base, serialize_task_context


@task
def square(x: int) -> int:
    return x * x


@task
async def asquare(x: int) -> int:
    await asyncio.sleep(0)
    return x * x


@task
def api_url(_: int) -> str:
    return str(PREFECT_API_URL.value())


@task
def retries_setting() -> int:
    return int(PREFECT_TASKS_DEFAULT_RETRIES.value())


@task
def boom() -> None:
    msg = "tile 7 is corrupt"
    raise RuntimeError(msg)


def test_context_keys_match_prefect() -> None:
    ours = serialize_task_context(square, uuid4(), {})
    assert set(ours) == set(serialize_context())
    assert ours["settings_context"] == {}


def test_runner_is_a_dask_task_runner_and_pickles_by_reference() -> None:
    runner = dask_runner("local")
    assert isinstance(runner, DaskTaskRunner)
    assert isinstance(runner, fast_submit_base())
    clone = pickle.loads(pickle.dumps(runner.duplicate()))
    assert type(clone) is type(runner)
    assert clone.cluster_kwargs == runner.cluster_kwargs


def test_local_flow_runs_tasks_on_dask(prefect_server: str) -> None:
    @flow(task_runner=dask_runner("local", n_workers=1, threads_per_worker=2))
    def pipeline(n: int) -> tuple[list[int], list[int], list[str]]:
        sync = square.map(range(n)).result()
        asyn = asquare.map(range(3)).result()
        urls = api_url.map(range(2)).result()
        return sync, asyn, urls

    sync, asyn, urls = pipeline(20)
    assert sync == [x * x for x in range(20)]
    assert asyn == [0, 1, 4]
    assert set(urls) == {prefect_server}  # settings reached the worker


def test_settings_changed_inside_the_flow_reach_the_worker(prefect_server: str) -> None:
    @flow(task_runner=dask_runner("local"))
    def pipeline() -> tuple[int, int]:
        before = retries_setting.submit().result()
        with temporary_settings(updates={PREFECT_TASKS_DEFAULT_RETRIES: 7}):
            inside = retries_setting.submit().result()
        return before, inside

    before, inside = pipeline()
    assert before != 7
    assert inside == 7


def test_a_failing_task_fails_the_flow(prefect_server: str) -> None:
    @flow(task_runner=dask_runner("local"))
    def pipeline() -> None:
        boom.submit().result()

    state = pipeline(return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="tile 7 is corrupt"):
        state.result()


def test_local_overrides_validate(prefect_server: str) -> None:
    from oxeo_flows import ConfigError

    with pytest.raises(ConfigError, match=r"n_workers|n-workers"):
        dask_runner("local", n_workers="many")
    runner: Any = dask_runner("local", processes=False, n_workers=2)
    assert runner.cluster_kwargs["n_workers"] == 2
