"""An emulated Google Cloud and AWS on loopback, for testing flow repositories offline.

Enable the pytest plugin with ``pytest -p oxeo_flows.testing`` (or ``addopts`` in your
pytest config). It turns on a loopback guard for every test and provides the fixtures
``compute_emulator``, ``ec2_emulator``, ``vertex_emulator`` and ``secret_manager_emulator``.
The emulators can also be used directly (context managers):

- `oxeo_flows.testing.compute.ComputeEmulator`: Compute Engine REST; VMs boot their
  cloud-init's container command in this virtualenv, each on its own 127.10.0.N address;
- `oxeo_flows.testing.ec2.EC2Emulator`: moto with a loopback VPC; instances boot likewise;
- `oxeo_flows.testing.vertex.VertexEmulator`: Vertex AI JobService that runs each CustomJob;
- `oxeo_flows.testing.secretmanager.SecretManagerEmulator`: Secret Manager (gRPC);
- `oxeo_flows.testing.guard`: the loopback guard.

Install with ``pip install 'oxeo-flows[testing]'``. Nothing in ``oxeo_flows`` imports this
package. See the guide ``docs/guides/testing.md``.
"""

from __future__ import annotations

from oxeo_flows.testing._plugin import (
    compute_emulator,
    ec2_emulator,
    loopback_guard,
    pytest_configure,
    pytest_runtest_call,
    secret_manager_emulator,
    vertex_emulator,
)

__all__ = [
    "compute_emulator",
    "ec2_emulator",
    "loopback_guard",
    "pytest_configure",
    "pytest_runtest_call",
    "secret_manager_emulator",
    "vertex_emulator",
]
