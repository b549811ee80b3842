"""The loopback guard: a test (or an emulated process) that reaches past 127.0.0.0/8 fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

USER_TESTS = textwrap.dedent(
    """
    import socket

    def test_connects_out():
        socket.create_connection(("10.1.2.3", 80), timeout=1)

    def test_looks_up_a_name():
        socket.getaddrinfo("metadata.google.internal", 80)

    def test_swallows_the_error():
        try:
            socket.create_connection(("169.254.169.254", 80), timeout=1)
        except OSError:
            pass

    def test_raw_connect_is_refused_too():
        sock = socket.socket()
        try:
            sock.connect(("10.9.8.7", 443))
        except ConnectionRefusedError:
            pass
        finally:
            sock.close()

    def test_loopback_is_fine():
        server = socket.create_server(("127.0.0.1", 0))
        socket.create_connection(server.getsockname(), timeout=1).close()
        socket.getaddrinfo("localhost", 80)
        server.close()
    """
)


def test_a_test_that_leaves_loopback_fails(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "oxeo_flows.testing",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout + result.stderr
    assert "4 failed, 1 passed" in out, out
    assert "loopback guard: refused getaddrinfo '10.1.2.3'" in out
    assert "getaddrinfo 'metadata.google.internal'" in out
    assert "the loopback guard refused: connect ('10.9.8.7', 443)" in out
    assert "the loopback guard refused: getaddrinfo '169.254.169.254'" in out


def test_an_emulated_process_cannot_leave_loopback() -> None:
    from oxeo_flows.testing._env import process_env

    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('10.1.2.3', 80), timeout=1)\n"
        "except ConnectionRefusedError as exc:\n"
        "    raise SystemExit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=process_env({}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "loopback guard: refused getaddrinfo '10.1.2.3'" in result.stderr
