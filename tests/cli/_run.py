"""Run the ``oxeo-flows`` command line as a fresh process, with this tree's sources first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
#: The CLI entry point, as the installed ``oxeo-flows`` script calls it.
MAIN = "import sys; from oxeo_flows.cli import main; sys.argv[0] = 'oxeo-flows'; main()"


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    code: str = MAIN,
    path: tuple[Path, ...] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -c CODE ARGS...`` in ``cwd``; ``path`` goes before the sources on PYTHONPATH."""
    full = {**os.environ, **(env or {})}
    full["PYTHONPATH"] = os.pathsep.join(str(p) for p in (*path, SRC))
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
