"""The ``gcp`` secret source: Google Cloud Secret Manager.

A secret ``NAME`` is read as ``projects/PROJECT/secrets/NAME/versions/VERSION``. The project
is the one in the reference (``gcp://PROJECT/NAME``), else the stack's ``secrets.gcp-project``,
else ``gcp.project``. The payload's CRC32C is verified.

The API endpoint is ``secretmanager.googleapis.com`` unless the stack sets
``gcp.endpoints.secret-manager`` (a private endpoint or an emulator). A loopback endpoint
(``127.0.0.1:PORT``, ``localhost:PORT``, ``[::1]:PORT``) is dialed in plaintext with anonymous
credentials; any other endpoint with TLS and the normal credentials (Application Default
Credentials).

Errors: NOT_FOUND moves on to the next source; UNAVAILABLE, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED, INTERNAL and ABORTED are retried; PERMISSION_DENIED, UNAUTHENTICATED, a
disabled or destroyed version and anything else stop the chain.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows._loopback import is_loopback_endpoint
from oxeo_flows.errors import ConfigError, SecretAccessError, SecretIntegrityError
from oxeo_flows.secrets._base import Fetched, Lookup, SourceNotFound, SourceTransient

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack

__all__ = ["is_loopback_endpoint", "secret_manager_client"]

CACHEABLE = True
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_clients: dict[str | None, Any] = {}
_lock = threading.Lock()

_TRANSIENT = (
    "ServiceUnavailable",
    "DeadlineExceeded",
    "TooManyRequests",
    "ResourceExhausted",
    "InternalServerError",
    "Aborted",
)


def _target(endpoint: str) -> str:
    return endpoint.split("://", 1)[-1].rstrip("/")


def secret_manager_client(endpoint: str | None = None) -> Any:
    """A (cached) ``SecretManagerServiceClient`` for ``endpoint``.

    Args:
        endpoint: ``HOST:PORT`` of the API, or None for Google's public endpoint. A loopback
            endpoint gets a plaintext channel and anonymous credentials; anything else TLS
            and Application Default Credentials.

    Returns:
        A ``google.cloud.secretmanager_v1.SecretManagerServiceClient``.

    Raises:
        MissingExtraError: google-cloud-secret-manager is not installed.
        SecretAccessError: No Google credentials could be found.
    """
    with _lock:
        client = _clients.get(endpoint)
        if client is not None:
            return client
        sm = require("google.cloud.secretmanager_v1", "gcp")
        if endpoint is not None and is_loopback_endpoint(endpoint):
            grpc = require("grpc", "gcp")
            from google.auth.credentials import AnonymousCredentials
            from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
                SecretManagerServiceGrpcTransport,
            )

            target = _target(endpoint)
            transport = SecretManagerServiceGrpcTransport(
                host=target,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                channel=grpc.insecure_channel(target),
            )
            client = sm.SecretManagerServiceClient(transport=transport)
        else:
            from google.api_core.client_options import ClientOptions
            from google.auth.exceptions import DefaultCredentialsError

            options = ClientOptions(api_endpoint=_target(endpoint)) if endpoint else None
            try:
                client = sm.SecretManagerServiceClient(client_options=options)
            except DefaultCredentialsError as exc:
                msg = (
                    "gcp: no Google credentials found for Secret Manager. Run "
                    "'gcloud auth application-default login', set "
                    "GOOGLE_APPLICATION_CREDENTIALS, or run on Google Cloud with a service "
                    "account."
                )
                raise SecretAccessError(msg) from exc
        _clients[endpoint] = client
        return client


def _project(lookup: Lookup, stack: Stack) -> str:
    project = lookup.project or stack.secrets.gcp_project or stack.gcp.project
    if not project:
        msg = (
            f"cannot read GCP secret {lookup.name!r}: no project. Set secrets.gcp-project or "
            f"gcp.project in stack {stack.name!r} (e.g. OXEO_FLOWS_GCP__PROJECT=my-project), or "
            "use a reference with the project: gcp://PROJECT/NAME"
        )
        raise ConfigError(msg)
    return project


def identity(lookup: Lookup, stack: Stack) -> Hashable:
    """The project and endpoint decide where the secret is read."""
    return (_project(lookup, stack), stack.gcp.endpoints.secret_manager)


def fetch(lookup: Lookup, stack: Stack) -> Fetched:
    """Access one secret version and verify its CRC32C."""
    project = _project(lookup, stack)
    if not _SECRET_ID.match(lookup.name):
        msg = f"{lookup.name!r} is not a valid Secret Manager secret id ([A-Za-z0-9_-], 1-255)"
        raise SourceNotFound(msg)
    resource = f"projects/{project}/secrets/{lookup.name}/versions/{lookup.version}"
    endpoint = stack.gcp.endpoints.secret_manager
    client = secret_manager_client(endpoint)
    exceptions = require("google.api_core.exceptions", "gcp")
    try:
        response = client.access_secret_version(
            request={"name": resource}, retry=None, timeout=stack.secrets.timeout
        )
    except exceptions.NotFound:
        raise SourceNotFound(f"{resource} does not exist") from None
    except exceptions.GoogleAPICallError as exc:
        kind = type(exc).__name__
        if kind in _TRANSIENT:
            raise SourceTransient(f"{resource}: {kind}: {exc.message}") from exc
        if kind in ("PermissionDenied", "Forbidden", "Unauthenticated", "Unauthorized"):
            msg = (
                f"gcp: access to {resource} was denied ({kind}: {exc.message}). Grant the "
                "caller's identity roles/secretmanager.secretAccessor on the secret, e.g. "
                f"gcloud secrets add-iam-policy-binding {lookup.name} --project={project} "
                "--member=serviceAccount:SA_EMAIL --role=roles/secretmanager.secretAccessor"
            )
        elif kind == "FailedPrecondition":
            msg = (
                f"gcp: {resource} cannot be read ({exc.message}); the version is probably "
                "disabled or destroyed. Enable it or ask for another version."
            )
        else:
            msg = f"gcp: reading {resource} failed: {kind}: {exc.message}"
        raise SecretAccessError(msg) from exc
    except exceptions.RetryError as exc:  # pragma: no cover - retries are ours (retry=None)
        raise SourceTransient(f"{resource}: {exc}") from exc
    # Read the raw protobuf: proto-plus attribute access costs more than the check itself.
    raw = type(response).pb(response)
    data: bytes = raw.payload.data
    if raw.payload.HasField("data_crc32c"):
        google_crc32c = require("google_crc32c", "gcp")
        if google_crc32c.value(data) != raw.payload.data_crc32c:
            msg = (
                f"gcp: the payload of {resource} failed its CRC32C check (corrupted in "
                "transit or by a proxy); nothing was returned. Try again."
            )
            raise SecretIntegrityError(msg)
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        msg = (
            f"gcp: the payload of {resource} is not UTF-8 text; store text (e.g. base64) to "
            "load it as a secret string"
        )
        raise SecretAccessError(msg) from None
    return Fetched(value=value, where=str(raw.name or resource))
