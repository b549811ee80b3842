"""Google credentials from service-account JSON held in a secret (never written to disk)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows.errors import SecretError
from oxeo_flows.secrets._core import load_secret

if TYPE_CHECKING:
    from google.oauth2.service_account import Credentials
    from prefect_gcp import GcpCredentials

    from oxeo_flows.stack import Stack

__all__ = ["gcp_credentials_from_secret", "google_credentials_from_secret"]

_REQUIRED = ("type", "client_email", "private_key", "token_uri")


def _service_account_info(
    name: str, sources: Sequence[str] | None, stack: Stack | str | None
) -> dict[str, Any]:
    text = load_secret(name, sources=sources, stack=stack).get_secret_value()
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        msg = (
            f"secret {name!r} is not service-account JSON (it does not parse as JSON); store "
            "the key file's contents, e.g. gcloud secrets versions add NAME --data-file=key.json"
        )
        raise SecretError(msg) from None
    if not isinstance(info, dict):
        msg = f"secret {name!r} is JSON but not an object, so not a service-account key"
        raise SecretError(msg)
    missing = [k for k in _REQUIRED if k not in info]
    if missing or info.get("type") != "service_account":
        msg = (
            f"secret {name!r} is not a service-account key: "
            + (f"fields {missing} are missing" if missing else f"type is {info.get('type')!r}")
            + "; create one with gcloud iam service-accounts keys create"
        )
        raise SecretError(msg)
    return info


def google_credentials_from_secret(
    name: str,
    *,
    scopes: Sequence[str] | None = ("https://www.googleapis.com/auth/cloud-platform",),
    sources: Sequence[str] | None = None,
    stack: Stack | str | None = None,
) -> Credentials:
    """``google.oauth2.service_account.Credentials`` from service-account JSON in a secret.

    Args:
        name: Secret holding the key file's JSON (see `load_secret`).
        scopes: OAuth scopes (cloud-platform by default; None for none).
        sources: Sources to ask instead of the stack's ``secrets.sources``.
        stack: A `Stack`, a stack name, or None for the active stack.

    Returns:
        The credentials; the key stays in memory only.

    Raises:
        SecretError: The secret is not a service-account key.
        MissingExtraError: google-auth is not installed (``pip install 'oxeo-flows[gcp]'``).
    """
    info = _service_account_info(name, sources, stack)
    service_account = require("google.oauth2.service_account", "gcp")
    try:
        creds: Credentials = service_account.Credentials.from_service_account_info(
            info, scopes=list(scopes) if scopes else None
        )
    except ValueError as exc:
        msg = f"secret {name!r} holds an unusable service-account key ({type(exc).__name__})"
        raise SecretError(msg) from None
    return creds


def gcp_credentials_from_secret(
    name: str,
    *,
    project: str | None = None,
    sources: Sequence[str] | None = None,
    stack: Stack | str | None = None,
) -> GcpCredentials:
    """A ``prefect_gcp.GcpCredentials`` block from service-account JSON in a secret.

    The block holds the JSON in ``service_account_info`` (in memory; nothing is written to
    disk). Do not ``save()`` it unless you mean to copy the key into Prefect.

    Args:
        name: Secret holding the key file's JSON (see `load_secret`).
        project: Project for the block (default: the key's ``project_id``).
        sources: Sources to ask instead of the stack's ``secrets.sources``.
        stack: A `Stack`, a stack name, or None for the active stack.

    Returns:
        An unsaved `GcpCredentials` block.

    Raises:
        SecretError: The secret is not a service-account key.
        MissingExtraError: prefect-gcp is not installed (``pip install 'oxeo-flows[gcp]'``).
    """
    info = _service_account_info(name, sources, stack)
    prefect_gcp = require("prefect_gcp", "gcp")
    block: GcpCredentials = prefect_gcp.GcpCredentials(
        service_account_info=info, project=project or info.get("project_id")
    )
    return block
