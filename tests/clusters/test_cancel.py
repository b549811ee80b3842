"""Cancellation: a flow-run process sent SIGTERM (as Prefect cancels) closes its cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

#: A flow whose one task waits to be released; ``RUNNER`` is the task runner expression.
SCRIPT_TEMPLATE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from prefect import flow, task
    from oxeo_flows import dask_runner

    STARTED = Path(sys.argv[1])
    RELEASE = STARTED.with_name("release")

    @task
    def wait_forever() -> None:
        from distributed import get_worker
        STARTED.write_text(get_worker().scheduler.address)
        # A worker thread cannot be interrupted; the test releases it once SIGTERM is sent,
        # so that closing the cluster does not wait for a long sleep.
        deadline = time.monotonic() + 120
        while not RELEASE.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    @flow(task_runner=RUNNER)
    def long_running() -> None:
        wait_forever.submit().result()

    if __name__ == "__main__":
        long_running()
    """
)
SCRIPT = SCRIPT_TEMPLATE.replace("RUNNER", 'dask_runner("local", start_timeout=60)')


def test_sigterm_closes_the_cluster(prefect_api: str, tmp_path: Path) -> None:
    script = tmp_path / "flow.py"
    script.write_text(SCRIPT, encoding="utf-8")
    started = tmp_path / "started"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_LOGGING_LEVEL": "INFO"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(started)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if not started.exists():
            proc.kill()
            raise AssertionError(proc.communicate()[0][-4000:])
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        (tmp_path / "release").write_text("go")
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Closed Dask cluster" in output, output[-3000:]
    assert proc.returncode != 0
    # Prefect saw the termination signal, and our runner closed the cluster while unwinding.
    assert "termination signal" in output
    assert output.index("Closed Dask cluster") < output.index("Finished in state Crashed")
