"""Container entrypoint for Vertex AI jobs: fetch the Prefect API key, then run the flow run.

Usage (set for you by `VertexJob.job_variables` when ``api_key_secret`` is set)::

    python -m oxeo_flows.vertex_entrypoint --api-key-secret SECRET -- prefect flow-run execute

where SECRET is ``projects/<PROJECT>/secrets/<NAME>`` (latest version unless
``/versions/<N>`` is given).

Why: a Prefect worker copies its ``PREFECT_API_KEY`` into each job's environment, and Vertex
AI stores a custom job's ``container_spec.env`` in plain text (visible to anyone who can view
the job) because it cannot mount Secret Manager secrets as environment variables. The job
variables therefore set ``PREFECT_API_KEY`` to null (Prefect removes null variables from the
job's environment), and this module, running inside the job as its service account, reads the
key from Secret Manager, puts it into its own environment, and replaces itself with the real
command (``os.execvp``: same process, signals and exit code pass straight through).

The job's service account needs ``roles/secretmanager.secretAccessor`` on the secret, and the
image needs ``oxeo-flows[gcp]``. The Secret Manager endpoint is ``--secret-manager-endpoint``,
else ``OXEO_FLOWS_GCP__ENDPOINTS__SECRET_MANAGER``, else the active stack's
``gcp.endpoints.secret-manager`` (the stack file in the job's working directory, the stack
named by ``OXEO_FLOWS_STACK``), else Google's.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

from oxeo_flows.errors import OxeoFlowsError, SecretAccessError, SecretNotFoundError

__all__ = ["DEFAULT_COMMAND", "main", "read_api_key"]

DEFAULT_COMMAND = ("prefect", "flow-run", "execute")
_ENDPOINT_ENV = "OXEO_FLOWS_GCP__ENDPOINTS__SECRET_MANAGER"
EXIT_SECRET = 78  # EX_CONFIG: the job is misconfigured (no such secret, no permission)


def _version_name(secret: str) -> str:
    return secret if "/versions/" in secret else f"{secret}/versions/latest"


def read_api_key(secret: str, *, endpoint: str | None = None) -> str:
    """Read the Prefect API key from a Secret Manager secret.

    Args:
        secret: ``projects/<P>/secrets/<NAME>`` (``/versions/<V>`` optional; latest by default).
        endpoint: ``HOST:PORT`` of the Secret Manager API (loopback: plaintext, anonymous).

    Returns:
        The key, stripped of surrounding whitespace.

    Raises:
        SecretNotFoundError: The secret or version does not exist.
        SecretAccessError: Access was refused or failed, or the payload is empty.
    """
    from oxeo_flows.secrets._core import protect_value
    from oxeo_flows.secrets.gcp import secret_manager_client

    name = _version_name(secret)
    client = secret_manager_client(endpoint)
    try:
        response = client.access_secret_version(name=name)
    except Exception as exc:
        kind = type(exc).__name__
        if kind == "NotFound":
            msg = f"Secret Manager has no secret version {name!r} (the Prefect API key)"
            raise SecretNotFoundError(msg) from exc
        msg = (
            f"could not read {name!r} (the Prefect API key) from Secret Manager: {kind}: {exc}. "
            "The job's service account needs roles/secretmanager.secretAccessor on it"
        )
        raise SecretAccessError(msg) from exc
    key = bytes(response.payload.data).decode("utf-8").strip()
    if not key:
        msg = f"secret {name!r} is empty; store the Prefect API key in it"
        raise SecretAccessError(msg)
    protect_value(key)
    return key


def _stack_endpoint() -> str | None:
    """``gcp.endpoints.secret-manager`` of the active stack, if a stack file says so."""
    from oxeo_flows.stack import resolve_stack

    try:
        return resolve_stack(None).gcp.endpoints.secret_manager
    except OxeoFlowsError:
        return None


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    args = list(argv)
    command: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, command = args[:cut], args[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog=f"python -m {__name__}",
        description="Read PREFECT_API_KEY from Secret Manager, then exec COMMAND.",
        epilog="COMMAND defaults to: prefect flow-run execute",
    )
    parser.add_argument("--api-key-secret", required=True, help="projects/<P>/secrets/<NAME>")
    parser.add_argument(
        "--secret-manager-endpoint",
        default=os.environ.get(_ENDPOINT_ENV) or None,
        help=(
            f"HOST:PORT of the Secret Manager API (default: ${_ENDPOINT_ENV}, the active "
            "stack's gcp.endpoints.secret-manager, or Google's)"
        ),
    )
    options = parser.parse_args(args)
    if options.secret_manager_endpoint is None:
        options.secret_manager_endpoint = _stack_endpoint()
    return options, command or list(DEFAULT_COMMAND)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the entrypoint: set ``PREFECT_API_KEY`` from Secret Manager, then exec the command.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
    """
    options, command = _parse(sys.argv[1:] if argv is None else argv)
    try:
        key = read_api_key(options.api_key_secret, endpoint=options.secret_manager_endpoint)
    except OxeoFlowsError as exc:
        print(f"oxeo-flows vertex entrypoint: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_SECRET) from None
    os.environ["PREFECT_API_KEY"] = key
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(command[0], command)  # noqa: S606 - the job's own command, by design
    except OSError as exc:
        shown = shlex.join(command)
        print(f"oxeo-flows vertex entrypoint: cannot run {shown!r}: {exc}", file=sys.stderr)
        raise SystemExit(127) from None


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests
    main()
