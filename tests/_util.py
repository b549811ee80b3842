"""Helpers shared by tests (import them; fixtures live in conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_stack(directory: Path, body: str, *, name: str = "pyproject.toml") -> Path:
    """Write a configuration file for tests; returns its path."""
    path = directory / name
    path.write_text(body, encoding="utf-8")
    return path


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) in a fresh interpreter of this venv, with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


def wait_until(condition: Callable[[], object], seconds: float, *, every: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``seconds`` pass; returns its last value's truth.

    A bound on how long a test waits for something that happens, never a timing assertion.
    """
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(every)
    return bool(condition())
