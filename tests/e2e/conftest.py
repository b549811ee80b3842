"""End to end on the emulated clouds: the oxeo_flows.testing plugin's guard and fixtures.

Every test here runs under the loopback guard (autouse ``loopback_guard``), with the real
Prefect server of tests/conftest.py.
"""

from __future__ import annotations

from oxeo_flows.testing import (  # noqa: F401 - pytest fixtures
    compute_emulator,
    ec2_emulator,
    loopback_guard,
    secret_manager_emulator,
    vertex_emulator,
)
