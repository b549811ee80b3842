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


@task
def add(x: int, y: int) -> int:
    return x + y


@task(retries=1)
def odd_fails_once(x: int) -> int:
    # Travels by value to the worker: this set is the worker's copy, shared by the retries.
    if x % 2 and x not in _seen:
        _seen.add(x)
        msg = f"tile {x}: first attempt fails"
        raise ConnectionError(msg)
    return x


_seen: set[int] = set()


@task
def fails_on_three(x: int) -> int:
    if x == 3:
        msg = "tile 3 is corrupt"
        raise ValueError(msg)
    return x


def _task_runs(flow_run_id: Any, expected: int) -> list[Any]:
    """The flow run's task runs, once the server has recorded ``expected`` in final states."""
    import time

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=30)
    runs: list[Any] = []
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            if len(runs) >= expected and all(r.state and r.state.is_final() for r in runs):
                break
            time.sleep(0.2)
    return runs


def test_map_submits_one_graph_and_every_item_is_a_task_run(prefect_server: str) -> None:
    from prefect.utilities.annotations import unmapped

    from oxeo_flows._task_runner import GatheringFutureList  # type: ignore[attr-defined]

    kinds: list[str] = []

    @flow(task_runner=dask_runner("local"))
    def pipeline(n: int) -> tuple[list[int], list[int], list[int]]:
        squares = square.map(range(n))
        kinds.append(type(squares).__name__)
        # Upstream futures as mapped arguments, an unmapped one, and wait_for.
        first = square.submit(10)
        sums = add.map(squares, unmapped(first), wait_for=[first])
        retried = odd_fails_once.map(range(4))
        return squares.result(), sums.result(), retried.result()

    state = pipeline(6, return_state=True)
    assert state.is_completed(), state.message
    squares, sums, retried = state.result()
    assert squares == [x * x for x in range(6)]
    assert sums == [x * x + 100 for x in range(6)]
    assert retried == [0, 1, 2, 3]
    assert kinds == [GatheringFutureList.__name__]
    runs = _task_runs(state.state_details.flow_run_id, 6 + 1 + 6 + 4)
    assert len(runs) == 17
    assert all(r.state.is_completed() for r in runs)
    by_task = {r.name.rsplit("-", 1)[0] for r in runs}
    assert by_task == {"square", "add", "odd_fails_once"}
    # The retried runs went through Retrying, as on any task runner.
    assert sorted(r.run_count for r in runs if r.name.startswith("odd_fails_once")) == [1, 1, 2, 2]
    # Mapped sums depend on their upstream squares and on ``first``.
    sums_inputs = [r.task_inputs for r in runs if r.name.startswith("add")]
    assert all(inputs["x"] and inputs["y"] for inputs in sums_inputs)


def test_a_failing_mapped_task_keeps_prefect_semantics(prefect_server: str) -> None:
    @flow(task_runner=dask_runner("local"))
    def pipeline() -> list[Any]:
        futures = fails_on_three.map(range(5))
        futures.wait()
        return futures.result(raise_on_failure=False)

    values = pipeline()
    assert values[:3] == [0, 1, 2]
    assert isinstance(values[3], ValueError)
    assert values[4] == 4

    @flow(task_runner=dask_runner("local"))
    def strict() -> list[int]:
        return fails_on_three.map(range(5)).result()

    with pytest.raises(ValueError, match="tile 3 is corrupt"):
        strict()
