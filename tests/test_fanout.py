"""`map_in_chunks` on a real Prefect server: one task run per chunk, every tile's outcome kept."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any
from uuid import UUID

import pytest
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from oxeo_flows import ConfigError, dask_runner, map_in_chunks
from oxeo_flows.fanout import FanOutError, FanOutResult, TileError

_attempts: Counter[str] = Counter()
_lock = threading.Lock()
_running = {"now": 0, "most": 0}


@task(retries=2, tags={"tiles"})
def extract(tile: str, *, suffix: str = "") -> str:
    # On Dask this function travels by value, with a copy of ``_attempts`` (and no lock: a
    # tile's attempts run one after the other, in one chunk). The result says the attempt.
    _attempts[tile] += 1
    attempt = _attempts[tile]
    if tile.startswith("bad"):
        msg = f"{tile} is corrupt"
        raise RuntimeError(msg)
    if tile.startswith("flaky") and attempt < 3:
        msg = f"{tile}: transient error"
        raise ConnectionError(msg)
    return f"{tile.upper()}{suffix}#{attempt}"


def double(x: int) -> int:
    return 2 * x


async def adouble(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def tracked(x: int) -> int:
    with _lock:
        _running["now"] += 1
        _running["most"] = max(_running["most"], _running["now"])
    time.sleep(0.01)
    with _lock:
        _running["now"] -= 1
    return x


def task_run_names(flow_run_id: UUID, expected: int) -> list[str]:
    """The names of the flow run's task runs, once the server has recorded ``expected``."""
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
    return sorted(r.name for r in runs)


@pytest.mark.parametrize("runner", ["threads", "dask"])
def test_results_and_errors_per_tile_one_task_run_per_chunk(prefect_api: str, runner: str) -> None:
    _attempts.clear()
    tiles = [f"t{i}" for i in range(7)] + ["bad-1", "flaky-1", "t7", "bad-2"]

    @flow(task_runner=ThreadPoolTaskRunner() if runner == "threads" else dask_runner("local"))
    def pipeline(tiles: list[str]) -> FanOutResult[str, str]:
        return map_in_chunks(extract, tiles, chunk_size=3, suffix="!")

    state = pipeline(tiles, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result.chunks == 4
    assert result.total == len(tiles)
    good = [t for t in tiles if not t.startswith("bad")]
    attempts = {t: 3 if t.startswith("flaky") else 1 for t in good}
    # Retried per tile, without re-running the other tiles of its chunk.
    assert result.ok == [(t, f"{t.upper()}!#{attempts[t]}") for t in good]
    assert result.values == [f"{t.upper()}!#{attempts[t]}" for t in good]
    assert [(e.index, e.tile, e.type, e.attempts) for e in result.errors] == [
        (7, "bad-1", "RuntimeError", 3),
        (10, "bad-2", "RuntimeError", 3),
    ]
    assert "bad-1 is corrupt" in result.errors[0].message
    assert "Traceback" in result.errors[0].traceback
    names = task_run_names(state.state_details.flow_run_id, 4)
    assert len(names) == 4
    assert all(name.startswith("extract-chunk-") for name in names)


def test_raise_for_errors_fails_the_flow_naming_the_tiles(prefect_api: str) -> None:
    _attempts.clear()

    @flow(task_runner=ThreadPoolTaskRunner())
    def pipeline() -> list[str]:
        result = map_in_chunks(extract, ["a", "bad-x", "b"], chunk_size=2)
        result.raise_for_errors()
        return result.values

    state = pipeline(return_state=True)
    assert state.is_failed()
    with pytest.raises(FanOutError, match=r"1 of 3 tiles failed: tile 1 \('bad-x'\)") as info:
        state.result()
    assert [e.tile for e in info.value.errors] == ["bad-x"]
    assert info.value.total == 3


def test_plain_and_async_functions(prefect_api: str) -> None:
    @flow(task_runner=dask_runner("local"))
    def pipeline(n: int) -> tuple[list[int], list[int], int]:
        sync = map_in_chunks(double, range(n), chunk_size=4)
        asyn = map_in_chunks(adouble, range(n), chunk_size=50)
        return sync.values, asyn.values, sync.chunks + asyn.chunks

    sync, asyn, chunks = pipeline(10)
    assert sync == asyn == [2 * x for x in range(10)]
    assert chunks == 3 + 1


def test_at_most_max_in_flight_chunks_run(prefect_api: str) -> None:
    _running.update(now=0, most=0)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=8))
    def pipeline() -> list[int]:
        return map_in_chunks(tracked, range(12), chunk_size=2, max_in_flight=1).values

    assert pipeline() == list(range(12))
    assert _running["most"] == 1


def test_empty_input(prefect_api: str) -> None:
    @flow
    def pipeline() -> FanOutResult[int, int]:
        return map_in_chunks(double, [])

    result = pipeline()
    assert (result.ok, result.errors, result.chunks) == ([], [], 0)
    result.raise_for_errors()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_size": 0}, "chunk_size must be a positive integer, got 0"),
        ({"chunk_size": "10"}, "chunk_size must be a positive integer"),
        ({"max_in_flight": -1}, "max_in_flight must be a positive integer"),
    ],
)
def test_bad_sizes(prefect_api: str, kwargs: dict[str, Any], match: str) -> None:
    @flow
    def pipeline() -> None:
        map_in_chunks(double, [1], **kwargs)

    state = pipeline(return_state=True)
    with pytest.raises(ConfigError, match=match):
        state.result()


def test_not_callable_and_outside_a_flow(prefect_api: str) -> None:
    with pytest.raises(ConfigError, match="runs inside a flow"):
        map_in_chunks(double, [1])

    @flow
    def pipeline() -> None:
        map_in_chunks("extract", [1])  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match="needs a Prefect task or a function"):
        pipeline()


def test_tile_error_text() -> None:
    error = TileError(index=3, tile="x", type="ValueError", message="no", traceback="", attempts=1)
    assert str(error) == "tile 3 ('x'): ValueError: no"
    many = FanOutError([error] * 7, total=10)
    assert str(many).startswith("7 of 10 tiles failed: tile 3")
    assert str(many).endswith("; and 2 more")


def test_the_dask_guide_example_runs(prefect_api: str, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    guide = Path(__file__).resolve().parents[1] / "docs" / "guides" / "dask.md"
    section = guide.read_text(encoding="utf-8").split("## Fan-out", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {"__name__": "dask_guide_fanout"}
    exec(compile(code, str(guide), "exec"), namespace)
    assert namespace["extract"](["31U0001", "bad-tile", "31U0002"]) == [
        "31U0001: 4 bands",
        "31U0002: 4 bands",
    ]
    assert "failed: tile 1 ('bad-tile'): ValueError: bad-tile: no data" in capsys.readouterr().out


def test_default_in_flight_is_twice_the_runners_threads(prefect_api: str) -> None:
    from oxeo_flows.fanout import _in_flight_limit

    @flow(task_runner=dask_runner("local", n_workers=1, threads_per_worker=3))
    def on_dask() -> int:
        return _in_flight_limit()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=5))
    def on_threads() -> int:
        return _in_flight_limit()

    @flow(task_runner=ThreadPoolTaskRunner())  # unbounded by default
    def on_default_threads() -> int:
        return _in_flight_limit()

    assert (on_dask(), on_threads(), on_default_threads()) == (6, 10, 32)
