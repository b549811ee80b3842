"""A counting proxy that also loses answers and dies: the faults of a Prefect server mid-apply.

`DroppingProxy` sits in front of the real Prefect test server (it forwards every request for
real, so the server commits what it receives) and can:

- ``drop_after(fragment)``: forward the next write whose path contains ``fragment``, then close
  the connection without sending the server's answer (the write is committed, the client never
  learns it);
- ``die_after(fragment, answer=True)``: forward that write (and send its answer, or not), then
  stop listening, so every later connection is refused and every open one is dropped: the
  server died.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.fakes.proxy import CountingProxy, Reply, _is_write

__all__ = ["DroppingProxy"]


class _Dropped(Exception):
    """Raised in the proxy's handler: the connection is closed without an answer."""


class DroppingProxy(CountingProxy):
    """`CountingProxy` that can lose the answer to a write, or die after one."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self._drop: list[str] = []
        self._die: list[tuple[str, bool]] = []
        self.dead = False
        # A dropped connection is the point, not an error worth a traceback on stderr.
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]

    def drop_after(self, fragment: str) -> None:
        """Forward the next write whose path contains ``fragment``; drop its answer."""
        with self._lock:
            self._drop.append(fragment)

    def die_after(self, fragment: str, *, answer: bool = True) -> None:
        """Forward the next write whose path contains ``fragment``, then die."""
        with self._lock:
            self._die.append((fragment, answer))

    def intercept(self, method: str, path: str, headers: dict[str, str]) -> Reply | None:
        if self.dead:
            raise _Dropped
        return super().intercept(method, path, headers)

    def forward(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        reply = super().forward(method, path, body, headers)
        if not _is_write(method, path):
            return reply
        with self._lock:
            drop = next((f for f in self._drop if f in path), None)
            if drop is not None:
                self._drop.remove(drop)
            die = next((d for d in self._die if d[0] in path), None)
            if die is not None:
                self._die.remove(die)
        if die is not None:
            self.dead = True
            threading.Thread(target=self._stop_listening, daemon=True).start()
            if not die[1]:
                raise _Dropped
        if drop is not None:
            raise _Dropped
        return reply

    def _stop_listening(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __exit__(self, *exc: Any) -> None:
        if not self.dead:
            super().__exit__(*exc)
        else:
            self._thread.join(timeout=10)
