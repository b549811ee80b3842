"""Google Cloud REST APIs through Google's own client library (``googleapiclient``).

One way to build a client for Compute Engine, Service Networking, Artifact Registry and
Resource Manager, used by ``oxeo-flows clusters`` and ``oxeo-flows doctor``: the discovery
documents bundled with the library (no network call to build), a timeout on every request, and
the endpoint rule of ``[gcp.endpoints]``: a loopback endpoint (`oxeo_flows._loopback`) is dialed
in plaintext with anonymous credentials, anything else with TLS and Application Default
Credentials.

`fetch` is the one translation of the library's errors: it returns ``(HTTP status, body)``, with
status ``0`` when the API did not answer at all.
"""

from __future__ import annotations

import json
import os
from typing import Any

from oxeo_flows._extras import require
from oxeo_flows._loopback import is_loopback_endpoint

__all__ = ["SERVICES", "adc_unavailable", "fetch", "rest_service"]

#: API name -> (version, service path below the endpoint).
SERVICES: dict[str, tuple[str, str]] = {
    "compute": ("v1", "compute/v1/"),
    "servicenetworking": ("v1", ""),
    "artifactregistry": ("v1", ""),
    "cloudresourcemanager": ("v1", ""),
}
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
#: Seconds one request may take.
TIMEOUT = 10.0


def adc_unavailable() -> str | None:
    """Why Application Default Credentials cannot be found (None when they may be).

    Looked up without any network call (no metadata-server probe off GCE).
    """
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return None
    config = os.environ.get("CLOUDSDK_CONFIG") or os.path.expanduser("~/.config/gcloud")
    if os.path.isfile(os.path.join(config, "application_default_credentials.json")):
        return None
    try:
        with open("/sys/class/dmi/id/product_name", encoding="utf-8") as fh:
            if "Google" in fh.read():
                return None
    except OSError:
        pass
    return (
        "no Google credentials found (GOOGLE_APPLICATION_CREDENTIALS unset, no gcloud "
        "application-default login, not on GCE)"
    )


def _base_url(endpoint: str, service_path: str) -> str:
    if "://" in endpoint:
        base = endpoint
    else:
        scheme = "http" if is_loopback_endpoint(endpoint) else "https"
        base = f"{scheme}://{endpoint}"
    base = base.rstrip("/")
    # googleapiclient replaces the whole base URL; a bare host gets the API's own path.
    return f"{base}/{service_path}" if base.count("/") <= 2 else f"{base}/"


def rest_service(api: str, endpoint: str | None = None) -> Any:
    """A ``googleapiclient`` resource for ``api`` (a key of `SERVICES`).

    Args:
        api: ``compute``, ``servicenetworking``, ``artifactregistry`` or
            ``cloudresourcemanager``.
        endpoint: ``HOST[:PORT]`` or a base URL from ``[gcp.endpoints]``; None for Google's.

    Returns:
        The service resource (call ``.execute()`` through `fetch`).

    Raises:
        MissingExtraError: google-api-python-client is not installed (the ``dask`` extra).
        google.auth.exceptions.DefaultCredentialsError: No credentials (non-loopback only).
    """
    discovery = require("googleapiclient.discovery", "dask")
    httplib2 = require("httplib2", "dask")
    version, service_path = SERVICES[api]
    kwargs: dict[str, Any] = {"cache_discovery": False, "static_discovery": True}
    if endpoint:
        kwargs["client_options"] = {"api_endpoint": _base_url(endpoint, service_path)}
    http = httplib2.Http(timeout=TIMEOUT)
    if endpoint and is_loopback_endpoint(endpoint):
        kwargs["http"] = http
    else:
        import google.auth
        from google_auth_httplib2 import AuthorizedHttp  # type: ignore[import-untyped]

        credentials, _ = google.auth.default(scopes=_SCOPES)
        kwargs["http"] = AuthorizedHttp(credentials, http=http)
    return discovery.build(api, version, **kwargs)


def fetch(request: Any) -> tuple[int, dict[str, Any]]:
    """Execute a ``googleapiclient`` request; the one translation of its errors.

    Returns:
        ``(200, body)``, ``(status, error body)``, or ``(0, {"error": {"message": ...}})``
        when the API did not answer.
    """
    errors = require("googleapiclient.errors", "dask")
    try:
        body = request.execute(num_retries=0)
    except errors.HttpError as exc:
        try:
            parsed = json.loads(exc.content or b"{}")
        except ValueError:
            parsed = {"error": {"message": (exc.content or b"")[:200].decode(errors="replace")}}
        return int(exc.resp.status), parsed if isinstance(parsed, dict) else {}
    except (OSError, TimeoutError) as exc:
        return 0, {"error": {"message": f"{type(exc).__name__}: {exc}"}}
    except Exception as exc:  # httplib2's own transport errors
        if type(exc).__module__.startswith("httplib2"):
            return 0, {"error": {"message": f"{type(exc).__name__}: {exc}"}}
        raise
    return 200, body if isinstance(body, dict) else {}
