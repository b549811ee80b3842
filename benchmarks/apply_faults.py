"""How long `apply_stack` waits when the Prefect API does not answer (no real server needed).

Three loopback "servers": a closed port (the server is gone), a socket that accepts and never
answers (the server hangs), one that accepts and closes at once (the server dies under every
request). Prints the seconds until `ApplyError`, with the default timeout (30 s) and with 5 s,
and, for comparison, one read with Prefect's own client defaults (5 retries with back-off),
which is what every call of a 0.2.0 apply did.

Run: python benchmarks/apply_faults.py
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

STACK = """
[tool.oxeo-flows.stacks.bench.pools.bench-process]
type = "process"
working-dir = "/srv/flows"

[tool.oxeo-flows.stacks.bench.variables]
bench-greeting = "hello"
"""


@contextmanager
def _server(behaviour: str) -> Iterator[str]:
    """``gone``: nothing listens; ``hang``: accept, never answer; ``drop``: accept, close."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if behaviour == "gone":
        sock.close()
        yield f"http://127.0.0.1:{port}/api"
        return
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if behaviour == "drop":
                conn.recv(65536)
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/api"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        sock.close()


def _timed(call: Callable[[], object]) -> float:
    start = time.monotonic()
    try:
        call()
    except Exception as exc:
        kind = type(exc).__name__
    else:
        kind = "no error"
    took = time.monotonic() - start
    print(f"    -> {kind} after {took:.1f} s")
    return took


def main() -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from oxeo_flows.apply import apply_stack

    os.chdir(tempfile.mkdtemp(prefix="oxeo-bench-"))
    Path("pyproject.toml").write_text(STACK, encoding="utf-8")
    for behaviour in ("gone", "hang", "drop"):
        with _server(behaviour) as url, temporary_settings({PREFECT_API_URL: url}):
            for timeout in (30.0, 5.0):
                print(f"server {behaviour}: apply_stack(timeout={timeout:g})")
                _timed(lambda t=timeout: apply_stack("bench", timeout=t))  # type: ignore[misc]
            if behaviour == "drop":
                print(f"server {behaviour}: one read, Prefect client defaults (0.2.0 behaviour)")

                def read() -> object:
                    with get_client(sync_client=True) as client:
                        return client.read_variable_by_name("bench-greeting")

                _timed(read)


if __name__ == "__main__":
    main()
