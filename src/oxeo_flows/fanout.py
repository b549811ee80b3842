"""`map_in_chunks`: map a function over thousands of tiles with one Prefect task run per chunk.

A Prefect task run costs the API three state events (Pending, Running, Completed), whichever the
task runner. Past a few thousand tiles per flow run, the Prefect server, not the work, sets the
pace (docs/benchmarks.md, "Fan-out"). `map_in_chunks` runs ``chunk_size`` tiles per task run,
keeps every tile's result or error, and keeps at most ``max_in_flight`` chunks submitted at once,
so the client holds a bounded number of futures.

What stays Prefect's: each chunk is a task run with its states and logs (a failed tile is logged
in its chunk's run), named after the task; tags, ``log_prints``, result persistence and the
cache policy apply per chunk (a chunk is cached on its tiles). Retries apply per tile, inside
the chunk: a tile that fails ``retries + 1`` times is reported as an error and the other tiles of
its chunk are not re-run. A task's ``timeout_seconds`` and state hooks are not carried over
(they would apply to the whole chunk).
"""

from __future__ import annotations

import inspect
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from oxeo_flows.errors import ConfigError, OxeoFlowsError

if TYPE_CHECKING:
    from prefect.futures import PrefectFuture
    from prefect.tasks import Task

__all__ = ["FanOutError", "FanOutResult", "TileError", "map_in_chunks"]

T = TypeVar("T")
R = TypeVar("R")

#: Chunks kept in flight when the task runner's parallelism is unknown.
_DEFAULT_IN_FLIGHT = 32


@dataclass(frozen=True)
class TileError:
    """One tile that failed all its attempts.

    Attributes:
        index: Position of the tile in the input.
        tile: The tile itself.
        type: The exception's class name, e.g. ``"RuntimeError"``.
        message: ``str()`` of the exception.
        traceback: The formatted traceback of the last attempt.
        attempts: How many times the tile was tried.
    """

    index: int
    tile: Any
    type: str
    message: str
    traceback: str
    attempts: int

    def __str__(self) -> str:
        return f"tile {self.index} ({self.tile!r}): {self.type}: {self.message}"


class FanOutError(OxeoFlowsError):
    """Some tiles of a `map_in_chunks` fan-out failed (raised by `FanOutResult.raise_for_errors`).

    Attributes:
        errors: The failed tiles.
        total: How many tiles were mapped.
    """

    def __init__(self, errors: Sequence[TileError], total: int) -> None:
        self.errors = list(errors)
        self.total = total
        shown = "; ".join(str(e) for e in self.errors[:5])
        more = f"; and {len(self.errors) - 5} more" if len(self.errors) > 5 else ""
        super().__init__(f"{len(self.errors)} of {total} tiles failed: {shown}{more}")


@dataclass(frozen=True)
class FanOutResult(Generic[T, R]):
    """Every tile's outcome, in input order.

    Attributes:
        ok: ``(tile, result)`` of each tile that succeeded, in input order.
        errors: Each tile that failed, in input order.
        chunks: How many task runs (chunks) ran.
    """

    ok: list[tuple[T, R]] = field(default_factory=list)
    errors: list[TileError] = field(default_factory=list)
    chunks: int = 0

    @property
    def values(self) -> list[R]:
        """The results of the tiles that succeeded, in input order."""
        return [value for _, value in self.ok]

    @property
    def total(self) -> int:
        """How many tiles were mapped."""
        return len(self.ok) + len(self.errors)

    def raise_for_errors(self) -> None:
        """Raise `FanOutError` if any tile failed.

        Raises:
            FanOutError: Lists the failed tiles (the first five in the message).
        """
        if self.errors:
            raise FanOutError(self.errors, self.total)


@dataclass(frozen=True)
class _Chunk:
    start: int
    ok: list[tuple[int, Any]]
    errors: list[TileError]


def _delays(retry_delay: Any, retries: int) -> list[float]:
    if retry_delay is None:
        return [0.0] * retries
    if isinstance(retry_delay, (int, float)):
        return [float(retry_delay)] * retries
    delays = [float(d) for d in retry_delay]
    return [delays[min(i, len(delays) - 1)] for i in range(retries)] if delays else [0.0] * retries


def _failure(index: int, tile: Any, exc: BaseException, attempts: int) -> TileError:
    return TileError(
        index=index,
        tile=tile,
        type=type(exc).__name__,
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        attempts=attempts,
    )


def _log_failure(error: TileError) -> None:
    from prefect.logging import get_run_logger

    get_run_logger().error(
        "tile %d (%r) failed after %d attempt(s):\n%s",
        error.index,
        error.tile,
        error.attempts,
        error.traceback,
    )


def _tile_function(fn: Any) -> Callable[..., Any]:
    """The function to call per tile: a task's own function (no nested task run)."""
    from prefect.tasks import Task

    return fn.fn if isinstance(fn, Task) else fn


def _run_chunk(
    fn: Callable[..., Any] | Task[..., Any],
    tiles: list[Any],
    start: int,
    *,
    kwargs: dict[str, Any],
    retries: int,
    retry_delay: Any,
) -> _Chunk:
    """The body of a chunk task run: ``fn(tile, **kwargs)`` per tile, errors kept."""
    call = _tile_function(fn)
    ok: list[tuple[int, Any]] = []
    errors: list[TileError] = []
    delays = _delays(retry_delay, retries)
    for offset, tile in enumerate(tiles):
        for attempt in range(retries + 1):
            try:
                ok.append((start + offset, call(tile, **kwargs)))
                break
            except Exception as exc:  # every tile failure is kept, not raised
                if attempt < retries:
                    time.sleep(delays[attempt])
                    continue
                error = _failure(start + offset, tile, exc, attempt + 1)
                errors.append(error)
                _log_failure(error)
    return _Chunk(start=start, ok=ok, errors=errors)


async def _run_chunk_async(
    fn: Callable[..., Any] | Task[..., Any],
    tiles: list[Any],
    start: int,
    *,
    kwargs: dict[str, Any],
    retries: int,
    retry_delay: Any,
) -> _Chunk:
    """`_run_chunk` for ``async def`` functions (tiles awaited one after the other)."""
    import asyncio

    call = _tile_function(fn)
    ok: list[tuple[int, Any]] = []
    errors: list[TileError] = []
    delays = _delays(retry_delay, retries)
    for offset, tile in enumerate(tiles):
        for attempt in range(retries + 1):
            try:
                ok.append((start + offset, await call(tile, **kwargs)))
                break
            except Exception as exc:  # every tile failure is kept, not raised
                if attempt < retries:
                    await asyncio.sleep(delays[attempt])
                    continue
                error = _failure(start + offset, tile, exc, attempt + 1)
                errors.append(error)
                _log_failure(error)
    return _Chunk(start=start, ok=ok, errors=errors)


def _chunk_task(fn: Callable[..., Any] | Task[..., Any]) -> tuple[Task[..., Any], Any, int, Any]:
    """The chunk task for ``fn``, what it calls per tile, its retries and retry delay.

    A task travels as itself (Prefect tasks pickle; their ``.fn`` often does not by reference).
    """
    from prefect.tasks import Task

    if isinstance(fn, Task):
        tile_fn: Any = fn
        options: dict[str, Any] = {
            "name": f"{fn.name}-chunk",
            "tags": set(fn.tags),
            "log_prints": fn.log_prints,
            "persist_result": fn.persist_result,
            "cache_policy": fn.cache_policy,
            "cache_expiration": fn.cache_expiration,
        }
        retries, retry_delay = fn.retries, fn.retry_delay_seconds
    elif callable(fn):
        tile_fn = fn
        options = {"name": f"{getattr(fn, '__name__', 'tile')}-chunk"}
        retries, retry_delay = 0, None
    else:
        msg = f"map_in_chunks needs a Prefect task or a function to map, got {fn!r}"
        raise ConfigError(msg)
    body = _run_chunk_async if inspect.iscoroutinefunction(_tile_function(tile_fn)) else _run_chunk
    options = {k: v for k, v in options.items() if v is not None}
    chunk_task = Task(fn=body, retries=0, **options)
    return chunk_task, tile_fn, retries, retry_delay


def _in_flight_limit() -> int:
    """Twice the active task runner's parallelism, when it is known."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    runner = getattr(ctx, "task_runner", None) if ctx is not None else None
    threads = 0
    client = getattr(runner, "_client", None)
    if client is None and any(c.__name__ == "DaskTaskRunner" for c in type(runner).__mro__):
        client = runner.client  # type: ignore[union-attr] # starts the cluster, as a submit would
    if client is not None:
        try:
            threads = sum(client.nthreads().values())
        except Exception:  # fall back to the default below
            threads = 0
    elif isinstance(getattr(runner, "_max_workers", None), int):
        threads = runner._max_workers  # type: ignore[union-attr]
    if 0 < threads < 10_000:
        return 2 * threads
    return _DEFAULT_IN_FLIGHT


def map_in_chunks(
    fn: Task[..., R] | Callable[..., R],
    tiles: Iterable[T],
    *,
    chunk_size: int = 100,
    max_in_flight: int | None = None,
    **kwargs: Any,
) -> FanOutResult[T, R]:
    """Map ``fn`` over ``tiles`` inside a flow, ``chunk_size`` tiles per Prefect task run.

    Each chunk is submitted to the flow's task runner (a Dask cluster from `dask_runner`, or
    the thread pool) as one task run named ``<task>-chunk``; within it, ``fn(tile, **kwargs)``
    runs for each tile in turn and every result or exception is kept. At most
    ``max_in_flight`` chunks are submitted at a time, and each chunk's future is released as
    soon as its results are collected.

    The trade-off: one task run (three state events) per chunk instead of per tile, so the
    Prefect server keeps up with tens of thousands of tiles; in exchange a tile has no task run
    of its own (its failure is a log line and a `TileError` in its chunk, not a Failed state)
    and the tiles of one chunk run one after the other.

    Args:
        fn: A Prefect task (its function runs per tile, with its retries, retry delays, tags,
            ``log_prints``, result and cache settings) or a plain function of one tile.
        tiles: The tiles, in order (any iterable; it is read once).
        chunk_size: Tiles per task run.
        max_in_flight: Most chunks submitted at once; default twice the task runner's
            threads (32 when unknown).
        **kwargs: Passed to every call, ``fn(tile, **kwargs)``.

    Returns:
        The tiles' results and errors, in input order; call
        `FanOutResult.raise_for_errors` to fail the flow on any tile error.

    Raises:
        ConfigError: ``chunk_size`` or ``max_in_flight`` is not a positive integer, ``fn`` is
            not callable, or no flow is running.

    Example:
        ```python
        from prefect import flow, task
        from oxeo_flows import dask_runner, map_in_chunks

        @task(retries=2)
        def extract(tile: str, bands: int = 3) -> str:
            return f"{tile}: {bands} bands"

        @flow(task_runner=dask_runner())
        def extract_all(tiles: list[str]) -> list[str]:
            result = map_in_chunks(extract, tiles, chunk_size=200, bands=4)
            result.raise_for_errors()
            return result.values
        ```
    """
    from prefect.context import FlowRunContext

    for name, value in (("chunk_size", chunk_size), ("max_in_flight", max_in_flight)):
        if value is None and name == "max_in_flight":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"map_in_chunks {name} must be a positive integer, got {value!r}"
            raise ConfigError(msg)
    if isinstance(tiles, (str, bytes)) or not isinstance(tiles, Iterable):
        msg = (
            f"map_in_chunks tiles must be an iterable of tiles (a list, a generator, ...), "
            f"got {type(tiles).__name__} {tiles!r:.80}"
        )
        raise ConfigError(msg)
    if FlowRunContext.get() is None:
        msg = "map_in_chunks runs inside a flow (it submits task runs to the flow's task runner)"
        raise ConfigError(msg)
    chunk_task, tile_fn, retries, retry_delay = _chunk_task(fn)
    limit = max_in_flight or _in_flight_limit()
    items = list(tiles)
    ok: list[tuple[T, R]] = []
    errors: list[TileError] = []
    in_flight: deque[PrefectFuture[_Chunk]] = deque()
    chunks = 0

    def collect(future: PrefectFuture[_Chunk]) -> None:
        chunk = future.result()
        ok.extend((items[index], value) for index, value in chunk.ok)
        errors.extend(chunk.errors)

    for start in range(0, len(items), chunk_size):
        if len(in_flight) >= limit:
            collect(in_flight.popleft())
        in_flight.append(
            chunk_task.submit(
                tile_fn,
                items[start : start + chunk_size],
                start,
                kwargs=kwargs,
                retries=retries,
                retry_delay=retry_delay,
            )
        )
        chunks += 1
    while in_flight:
        collect(in_flight.popleft())
    errors.sort(key=lambda e: e.index)
    return FanOutResult(ok=ok, errors=errors, chunks=chunks)
