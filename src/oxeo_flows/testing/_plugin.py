"""The pytest plugin behind ``pytest -p oxeo_flows.testing``: the loopback guard and fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from oxeo_flows.testing import guard
from oxeo_flows.testing._env import METADATA_ENV

if TYPE_CHECKING:
    from oxeo_flows.testing.compute import ComputeEmulator
    from oxeo_flows.testing.ec2 import EC2Emulator
    from oxeo_flows.testing.secretmanager import SecretManagerEmulator
    from oxeo_flows.testing.vertex import VertexEmulator

__all__ = [
    "compute_emulator",
    "ec2_emulator",
    "loopback_guard",
    "pytest_configure",
    "pytest_runtest_call",
    "secret_manager_emulator",
    "vertex_emulator",
]


def pytest_configure(config: pytest.Config) -> None:
    """Keep every client away from cloud metadata servers; install the (inert) guard."""
    for key, value in METADATA_ENV.items():
        os.environ.setdefault(key, value)
    config.addinivalue_line(
        "markers", "allow_network: turn the oxeo-flows loopback guard off for this test"
    )
    guard.install(enabled=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail a test whose code reached past loopback, even if a library swallowed the error."""
    seen = len(guard.violations)
    result = yield
    new = guard.violations[seen:]
    if new:
        pytest.fail(f"the loopback guard refused: {'; '.join(new)}", pytrace=False)
    return result


@pytest.fixture(autouse=True)
def loopback_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Refuse any connection or name lookup outside 127.0.0.0/8 and ::1 during the test.

    The guard is on for every test (mark one ``@pytest.mark.allow_network`` to turn it off).
    A refused attempt raises `LoopbackViolation` (a ``ConnectionRefusedError``) at the call;
    if a library swallowed the error, the test fails all the same.
    """
    if request.node.get_closest_marker("allow_network"):
        yield
        return
    guard.enable()
    try:
        yield
    finally:
        guard.disable()


@pytest.fixture
def compute_emulator() -> Iterator[ComputeEmulator]:
    """An emulated Compute Engine (project ``oxeo-test``, zones ``europe-west4-a/b``, subnet
    ``europe-west4/dask``). Point ``gcp.endpoints.compute`` at ``.endpoint``; every VM it booted
    is deleted (its processes stopped) at teardown."""
    from oxeo_flows.testing.compute import ComputeEmulator

    with ComputeEmulator() as emulator:
        yield emulator


@pytest.fixture
def ec2_emulator() -> Iterator[EC2Emulator]:
    """moto (EC2, S3, Secrets Manager...) with a loopback VPC and instances that boot; its URL
    is ``.endpoint_url`` (``aws.endpoint-url``)."""
    from oxeo_flows.testing.ec2 import EC2Emulator

    with EC2Emulator() as emulator:
        yield emulator


@pytest.fixture
def vertex_emulator() -> Iterator[VertexEmulator]:
    """An emulated Vertex AI JobService that runs each job's containers; ``.endpoint``."""
    from oxeo_flows.testing.vertex import VertexEmulator

    with VertexEmulator() as emulator:
        yield emulator


@pytest.fixture
def secret_manager_emulator() -> Iterator[SecretManagerEmulator]:
    """An emulated Secret Manager; ``.add(project, name, value)``; ``.endpoint`` for
    ``gcp.endpoints.secret-manager``."""
    from oxeo_flows.testing.secretmanager import SecretManagerEmulator

    with SecretManagerEmulator() as emulator:
        yield emulator
