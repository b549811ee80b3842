"""How `apply_stack` calls the Prefect API: a bounded wait, and what a lost answer means.

Prefect's client retries a failed request up to ``PREFECT_CLIENT_MAX_RETRIES`` (5) times with
an exponential back-off, so a dead server is only reported after about two minutes; and it
sends a write again when the answer to the first one was lost, so a create that the server
committed then fails with 409 and looks "not applied". Within an apply, and only there (the
settings are overridden in the apply's own context, never process-wide, see `ApiCalls.scope`):

- Prefect's own retries are off. `ApiCalls.run` retries instead, with a short back-off, until
  the call has been failing for ``timeout`` seconds; it retries only what is safe to repeat: a
  read, a write that never left (the connection was refused or never made), or an answer
  429 / 503 (the server refused before doing anything).
- Each request waits at most ``timeout`` (``PREFECT_API_REQUEST_TIMEOUT``), a retried one at
  most the time that is left, so a call gives up about ``timeout`` seconds after it started.
- A write that was sent but got no answer (the connection dropped, the read timed out, a
  gateway answered 502 / 504) is never repeated: its outcome is *unknown* (`Failure.lost`).

Every call `apply_stack` makes is idempotent when run again (it re-reads before it writes), so
the fix for an unknown outcome is always the same: run apply again.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from oxeo_flows.errors import ConfigError

__all__ = ["DEFAULT_TIMEOUT", "ApiCalls", "Failure", "api_url", "check_timeout", "classify"]

#: Seconds `apply_stack` keeps trying a Prefect API call that gets no answer.
DEFAULT_TIMEOUT = 30.0

_T = TypeVar("_T")
_READ_SUFFIXES = ("/filter", "/count", "/paginate")
_FIRST_DELAY = 0.2
_MAX_DELAY = 2.0


def check_timeout(timeout: Any) -> float:
    """``timeout`` as seconds, or a `ConfigError` naming it and the fix."""
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        msg = (
            f"apply timeout {timeout!r} is invalid: use a number of seconds greater than 0 "
            f"(default {DEFAULT_TIMEOUT:g}; CLI: --timeout SECONDS)"
        )
        raise ConfigError(msg)
    return float(timeout)


def api_url() -> str:
    """The Prefect API URL apply talks to (as configured in the current context)."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "(ephemeral API)")


@dataclass(frozen=True)
class Failure:
    """What a failed call means for apply.

    Attributes:
        http: The failure came from HTTP (an answer, or no answer), not from our own checks.
        transport: No answer at all (connection refused, dropped, timed out).
        retry: Safe and useful to try again (a read, a write that never left, 429 / 503).
        lost: A write was sent and no answer came back: it may have been committed.
        conflict: The server answered 409 (the object was created meanwhile).
    """

    http: bool = False
    transport: bool = False
    retry: bool = False
    lost: bool = False
    conflict: bool = False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        yield node
        node = node.__cause__ or node.__context__


def _is_write(method: str, path: str) -> bool:
    if method.upper() in ("GET", "HEAD", "OPTIONS"):
        return False
    return not path.rstrip("/").endswith(_READ_SUFFIXES)


def classify(exc: BaseException) -> Failure:
    """Classify a failure of a Prefect API call (looks through the exception's causes)."""
    import httpx

    http = next((e for e in _chain(exc) if isinstance(e, httpx.HTTPError)), None)
    if http is None:
        return Failure()
    try:
        request: httpx.Request | None = http.request
    except RuntimeError:  # an httpx error raised without a request
        request = None
    # Without the request we cannot tell: assume the worst (a write).
    write = request is None or _is_write(request.method, request.url.path)
    if isinstance(http, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Failure(http=True, transport=True, retry=True)
    if isinstance(http, httpx.TransportError):
        return Failure(http=True, transport=True, retry=not write, lost=write)
    if isinstance(http, httpx.HTTPStatusError):
        code = http.response.status_code
        if code in (429, 503):
            return Failure(http=True, retry=True)
        if code in (502, 504):
            return Failure(http=True, retry=not write, lost=write)
        return Failure(http=True, conflict=code == 409)
    return Failure(http=True)


@contextlib.contextmanager
def _request_timeout(seconds: float) -> Iterator[None]:
    from prefect.settings import PREFECT_API_REQUEST_TIMEOUT, temporary_settings

    with temporary_settings({PREFECT_API_REQUEST_TIMEOUT: max(seconds, 0.05)}):
        yield


class ApiCalls:
    """Run Prefect API calls with a bounded wait (see the module docstring).

    Args:
        timeout: Seconds a call may keep failing before apply gives up.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Prefect's client retries off and requests bounded by ``timeout``, in this context."""
        from prefect.settings import (
            PREFECT_API_REQUEST_TIMEOUT,
            PREFECT_CLIENT_MAX_RETRIES,
            temporary_settings,
        )

        updates = {PREFECT_CLIENT_MAX_RETRIES: 0, PREFECT_API_REQUEST_TIMEOUT: self.timeout}
        with temporary_settings(updates):
            yield

    def run(self, call: Callable[[], _T], *, conflicts: int = 0) -> _T:
        """Run ``call`` (idempotent), retrying what is safe to retry within the timeout.

        Args:
            call: The work: it opens its own Prefect clients (on a retry they get the time
                that is left as their request timeout).
            conflicts: How many times to run ``call`` again after a 409 (a concurrent apply
                created the object between our read and our write: running again re-reads).

        Returns:
            What ``call`` returns.

        Raises:
            Exception: The last failure of ``call``, unchanged (see `classify`).
        """
        start = time.monotonic()
        delay = _FIRST_DELAY
        retrying = False
        while True:
            try:
                if not retrying:
                    return call()  # requests wait at most `timeout` (see `scope`)
                # Only the time that is left (a new Settings object costs ~0.1 s: failures only).
                with _request_timeout(self.timeout - (time.monotonic() - start)):
                    return call()
            except Exception as exc:
                failure = classify(exc)
                if failure.conflict and conflicts > 0:
                    conflicts -= 1
                    continue
                left = self.timeout - (time.monotonic() - start)
                if not failure.retry or left <= delay:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)
            retrying = True

    def reason(self, exc: BaseException) -> str:
        """The failure in words, naming the API URL when the server did not answer."""
        import httpx

        failure = classify(exc)
        text = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.HTTPError):
            text = f"{type(exc).__name__}: {text}"
        if failure.transport and api_url() not in text:
            text += f" (Prefect API at {api_url()}, no answer within {self.timeout:g} s)"
        return text

    def fix(self, exc: BaseException) -> str:
        """What to do about the failure ``exc``."""
        failure = classify(exc)
        again = "re-run apply; it is idempotent (what was applied shows as unchanged)"
        if failure.lost:
            return (
                "The write was sent but no answer came back, so it may or may not have been "
                f"committed: {again}."
            )
        if failure.transport or failure.retry:
            return (
                f"Check that the Prefect API at {api_url()} is up and that PREFECT_API_URL "
                f"points at it (or raise --timeout, now {self.timeout:g} s), then {again}."
            )
        return f"Fix the problem, then {again}."
