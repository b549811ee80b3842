"""Nothing secret in a pickled runner: a connected TLS runner and its duplicate carry names only.

Prefect pickles task runners (cloudpickle) when it hands a flow run to a subprocess; Dask
pickles what tasks close over. The client's private key must not travel in either.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import cloudpickle
import pytest

from oxeo_flows import dask_runner


def _fragments(pem: str) -> list[str]:
    body = "".join(line for line in pem.splitlines() if line and "-----" not in line)
    return [body[i : i + 16] for i in range(16, len(body) - 16, 16)]


@pytest.fixture
def no_default_client() -> Iterator[None]:
    """No leftover default Dask client of an earlier test in this session.

    prefect_dask's runner connects to the cluster of any live default client it finds
    (``distributed.get_client()``) instead of its address; a test elsewhere that leaves one
    would make this one test that test's cluster.
    """
    from distributed import client as dask_client

    saved = dict(dask_client._global_clients)
    dask_client._global_clients.clear()
    try:
        yield
    finally:
        dask_client._global_clients.update(saved)


@pytest.mark.usefixtures("no_default_client")
def test_a_connected_tls_runner_and_its_duplicate_pickle_no_key(
    prefect_api: str,
    tls_cluster: str,
    tls_material: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DASK_TLS_CA", tls_material["ca"])
    monkeypatch.setenv("DASK_TLS_CERT", tls_material["cert"])
    monkeypatch.setenv("DASK_TLS_KEY", tls_material["key"])
    runner = dask_runner(
        "address",
        address=tls_cluster,
        tls={
            "ca_secret": "dask-tls-ca",
            "cert_secret": "dask-tls-cert",
            "key_secret": "dask-tls-key",
        },
        start_timeout=10,
    )
    canaries = _fragments(tls_material["key"])
    with runner:
        client = runner.client  # connected: the client holds the key, in memory
        assert client.submit(lambda: 1).result(timeout=10) == 1
        for label, obj in (("runner", runner), ("duplicate", runner.duplicate())):
            for dumps in (cloudpickle.dumps, pickle.dumps):
                data = dumps(obj).decode("latin-1")
                found = [c for c in canaries if c in data]
                assert not found, f"the client's TLS key is in the pickled {label}"
        # A pickled copy carries settings, not the connection; it connects again by itself.
        copy = cloudpickle.loads(cloudpickle.dumps(runner))
        assert copy.address == tls_cluster
        assert copy.tls == runner.tls
        with copy:
            assert copy.client.submit(lambda: 2).result(timeout=10) == 2
