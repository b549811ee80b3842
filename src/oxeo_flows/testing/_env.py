"""The environment every emulated process (VM container, Vertex replica) starts with."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from oxeo_flows.testing.guard import ENV_FLAG, site_dir

__all__ = ["METADATA_ENV", "base_env", "process_env"]

#: Keep google-auth and botocore away from the cloud metadata servers (169.254.169.254).
METADATA_ENV = {
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    "AWS_EC2_METADATA_DISABLED": "true",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}

#: Variables of the host process an emulated "image" inherits (the image is this venv).
_INHERITED = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "LOGNAME")


def base_env() -> dict[str, str]:
    """What the emulated image provides: this venv on PATH and sys.path, and the guard."""
    venv_bin = os.path.dirname(sys.executable)
    env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
    env["PATH"] = os.pathsep.join([venv_bin, os.environ.get("PATH", "/usr/bin:/bin")])
    python_path = [site_dir()]
    if os.environ.get("PYTHONPATH"):
        python_path.append(os.environ["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    env[ENV_FLAG] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(METADATA_ENV)
    return env


def process_env(extra: Mapping[str, str]) -> dict[str, str]:
    """`base_env` with the container's own variables on top (PYTHONPATH keeps the guard)."""
    env = base_env()
    for key, value in extra.items():
        if key == "PYTHONPATH":
            env[key] = os.pathsep.join([site_dir(), value, env[key]])
        else:
            env[key] = value
    return env
