"""A cluster's per-role TLS secrets (`oxeo_flows.clusters.vm_secrets`), on the emulated Secret
Manager: stored all at once before the first VM, and none left behind when one fails."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from oxeo_flows.clusters.vm_read import read_vm_secret
from oxeo_flows.clusters.vm_secrets import issue_vm_tls
from oxeo_flows.errors import SecretAccessError
from oxeo_flows.testing.secretmanager import SecretManagerEmulator

PROJECT = "oxeo-test"


@pytest.fixture
def sm() -> Iterator[SecretManagerEmulator]:
    with SecretManagerEmulator() as emulator:
        yield emulator


def test_publish_stores_every_role_once_and_each_vm_reads_its_own(
    sm: SecretManagerEmulator,
) -> None:
    tls = issue_vm_tls(
        True,
        "oxeo-pub00001",
        delivery="secret",
        location=f"gcp:{PROJECT}",
        endpoint=sm.endpoint,
        client_secret=True,
    )
    assert tls is not None
    tls.publish()
    tls.publish()  # once
    base = "oxeo-dask-oxeo-pub00001"
    assert sorted(n for (_, n) in sm.secrets) == [
        f"{base}-{r}" for r in ("client", "scheduler", "worker")
    ]
    assert sm.calls["CreateSecret"] == 3
    for role in ("scheduler", "worker"):
        got = read_vm_secret(f"gcp:{PROJECT}", f"{base}-{role}", sm.endpoint)
        assert got == tls.certs.bundle(role)
    assert sorted(tls.delete()) == sorted(f"{base}-{r}" for r in ("client", "scheduler", "worker"))
    assert sm.secrets == {}


def test_a_failed_create_leaves_no_secret(sm: SecretManagerEmulator) -> None:
    tls = issue_vm_tls(
        True, "oxeo-pub00002", delivery="secret", location=f"gcp:{PROJECT}", endpoint=sm.endpoint
    )
    assert tls is not None
    sm.fail(grpc.StatusCode.PERMISSION_DENIED, method="CreateSecret", message="no admin")
    with pytest.raises(SecretAccessError, match="could not create"):
        tls.publish()
    assert sm.secrets == {}
