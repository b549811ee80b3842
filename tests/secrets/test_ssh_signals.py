"""The SSH key file of a plain (non-flow) process is gone after SIGTERM, SIGINT or SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.secrets._keys import rsa_pem

HOLDER = """
import signal, sys, time
from oxeo_flows import ssh_key_file
if len(sys.argv) > 1 and sys.argv[1] == "chained":
    def mine(signum, frame):
        print("mine", flush=True)
        sys.exit(7)
    signal.signal(signal.SIGTERM, mine)
with ssh_key_file("deploy-key", sources=["env"]) as key:
    print(key, flush=True)
    time.sleep(120)
"""


def _start(tmp_path: Path, key: str, *args: str) -> tuple[subprocess.Popen[str], Path]:
    env = {
        **os.environ,
        "DEPLOY_KEY": key,
        "TMPDIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, proc.stderr.read() if proc.stderr else ""
    path = Path(line)
    assert path.read_text() == key.strip() + "\n"
    assert path.parent.parent == tmp_path
    return proc, path


def _files_holding(root: Path, key: str) -> list[Path]:
    lines = [line for line in key.splitlines() if line and not line.startswith("-----")]
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            if any(line in text for line in lines):
                found.append(path)
    return found


@pytest.mark.parametrize(
    ("sig", "expected"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, -signal.SIGINT)]
)
def test_key_file_removed_on_signal(tmp_path: Path, sig: int, expected: int) -> None:
    key = rsa_pem()
    proc, path = _start(tmp_path, key)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == expected
    assert not path.exists()
    assert not path.parent.exists()
    assert _files_holding(tmp_path, key) == []


def test_sigterm_chains_to_the_handler_already_there(tmp_path: Path) -> None:
    key = rsa_pem()
    proc, path = _start(tmp_path, key, "chained")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 7  # the program's own handler still ran
    assert proc.stdout is not None
    assert "mine" in proc.stdout.read()
    assert not path.parent.exists()
    assert _files_holding(tmp_path, key) == []


def test_directory_left_by_sigkill_is_swept_by_the_next_use(tmp_path: Path) -> None:
    key = rsa_pem()
    proc, path = _start(tmp_path, key)
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert path.exists()  # nothing can run on SIGKILL
    second, second_path = _start(tmp_path, key)
    try:
        assert not path.parent.exists()  # the next process removed the dead one's directory
        assert second_path.exists()
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    assert _files_holding(tmp_path, key) == []
