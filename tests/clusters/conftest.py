"""Fixtures for the Dask runner tests: real LocalClusters (TLS and plain) and bad peers."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._util import free_port


@pytest.fixture(scope="session")
def tls_material() -> dict[str, str]:
    """One set of temporary TLS material (PEM text) for a scheduler, workers and clients."""
    from distributed.security import Security

    sec = Security.temporary()
    return {
        "ca": sec.tls_ca_file,
        "cert": sec.tls_client_cert,
        "key": sec.tls_client_key,
        "scheduler_cert": sec.tls_scheduler_cert,
        "scheduler_key": sec.tls_scheduler_key,
        "worker_cert": sec.tls_worker_cert,
        "worker_key": sec.tls_worker_key,
    }


@pytest.fixture(scope="session")
def tls_cluster(tls_material: dict[str, str]) -> Iterator[str]:
    """A real TLS LocalCluster on 127.0.0.1 (in-process workers). Yields its tls:// address."""
    from distributed import LocalCluster
    from distributed.security import Security

    m = tls_material
    security = Security(
        tls_ca_file=m["ca"],
        tls_scheduler_cert=m["scheduler_cert"],
        tls_scheduler_key=m["scheduler_key"],
        tls_worker_cert=m["worker_cert"],
        tls_worker_key=m["worker_key"],
        tls_client_cert=m["cert"],
        tls_client_key=m["key"],
        require_encryption=True,
    )
    cluster = LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tls",
        host="127.0.0.1",
        security=security,
        dashboard_address=None,
        # Shutdown at session end logs cancelled comms after Prefect's log handler is gone.
        silence_logs=logging.CRITICAL,
    )
    try:
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture
def tls_files(tls_material: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The client TLS material written to files (paths)."""
    out = {}
    for item in ("ca", "cert", "key"):
        path = tmp_path / f"{item}.pem"
        path.write_text(tls_material[item], encoding="utf-8")
        path.chmod(0o600)
        out[item] = str(path)
    return out


class SilentServer:
    """A loopback TCP server that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A loopback port that accepts and never answers."""
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def refused_port() -> int:
    """A loopback port nobody listens on."""
    return free_port()


def flow_run_state(flow_run_id: Any) -> Any:
    """The stored state of a flow run, read back from the Prefect API."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state
