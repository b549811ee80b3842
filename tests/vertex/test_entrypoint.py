"""`python -m oxeo_flows.vertex_entrypoint`: the Prefect API key from Secret Manager, then exec."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from oxeo_flows.testing.secretmanager import SecretManagerEmulator as FakeSecretManager
from oxeo_flows.vertex_entrypoint import EXIT_SECRET

SECRET = "projects/oxeo-test/secrets/prefect-api-key"
KEY = "pnu_key-from-secret-manager-0123456789"
PRINT_KEY = [
    sys.executable,
    "-c",
    "import os, sys; sys.stdout.write(os.environ['PREFECT_API_KEY'])",
]


@pytest.fixture
def secret_manager() -> Iterator[FakeSecretManager]:
    with FakeSecretManager() as fake:
        yield fake


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_KEY"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "oxeo_flows.vertex_entrypoint", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        check=False,
    )


def test_reads_the_key_then_execs_the_command(secret_manager: FakeSecretManager) -> None:
    secret_manager.add("oxeo-test", "prefect-api-key", "old-key-version-1")
    secret_manager.add("oxeo-test", "prefect-api-key", KEY + "\n")
    done = _run(
        "--api-key-secret",
        SECRET,
        "--secret-manager-endpoint",
        secret_manager.endpoint,
        "--",
        *PRINT_KEY,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == KEY  # latest version, stripped
    assert secret_manager.accessed[-1] == f"{SECRET}/versions/latest"


def test_endpoint_from_the_environment_and_exit_code_passes_through(
    secret_manager: FakeSecretManager,
) -> None:
    secret_manager.add("oxeo-test", "prefect-api-key", KEY)
    done = _run(
        "--api-key-secret",
        f"{SECRET}/versions/1",
        "--",
        sys.executable,
        "-c",
        "raise SystemExit(3)",
        env={"OXEO_FLOWS_GCP__ENDPOINTS__SECRET_MANAGER": secret_manager.endpoint},
    )
    assert done.returncode == 3


def test_missing_secret_is_a_clear_failure(secret_manager: FakeSecretManager) -> None:
    done = _run(
        "--api-key-secret",
        SECRET,
        "--secret-manager-endpoint",
        secret_manager.endpoint,
        "--",
        *PRINT_KEY,
    )
    assert done.returncode == EXIT_SECRET
    assert "prefect-api-key" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
