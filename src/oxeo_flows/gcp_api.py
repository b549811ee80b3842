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

__all__ = ["SERVICES", "adc_unavailable", "fetch", "rest_service", "service_url"]

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


def service_url(api: str, endpoint: str) -> str:
    """The discovery ``api_endpoint`` of ``api`` at ``endpoint`` (``[gcp.endpoints]``).

    A bare ``HOST:PORT`` gets a scheme (``http`` for loopback, else ``https``) and the API's
    own path (``compute/v1/``); a URL with a path is used as it is.
    """
    return _base_url(endpoint, SERVICES[api][1])


def _base_url(endpoint: str, service_path: str) -> str:
    if "://" in endpoint:
        base = endpoint
    else:
        scheme = "http" if is_loopback_endpoint(endpoint) else "https"
        base = f"{scheme}://{endpoint}"
    base = base.rstrip("/")
    # googleapiclient replaces the whole base URL; a bare host gets the API's own path.
    return f"{base}/{service_path}" if base.count("/") <= 2 else f"{base}/"


def rest_service(
    api: str,
    endpoint: str | None = None,
    *,
    service_account_info: dict[str, Any] | None = None,
    thread_safe: bool = False,
    timeout: float = TIMEOUT,
) -> Any:
    """A ``googleapiclient`` resource for ``api`` (a key of `SERVICES`).

    Args:
        api: ``compute``, ``servicenetworking``, ``artifactregistry`` or
            ``cloudresourcemanager``.
        endpoint: ``HOST[:PORT]`` or a base URL from ``[gcp.endpoints]``; None for Google's.
        service_account_info: A service-account key to use instead of Application Default
            Credentials (ignored for a loopback endpoint).
        thread_safe: A fresh HTTP connection per request (httplib2 is not thread-safe), for
            clients whose requests run in several threads at once (dask-cloudprovider's).
        timeout: Seconds one request may take.

    Returns:
        The service resource (call ``.execute()`` through `fetch`).

    Raises:
        MissingExtraError: google-api-python-client is not installed (the ``dask`` extra).
        google.auth.exceptions.DefaultCredentialsError: No credentials (non-loopback only).
    """
    discovery = require("googleapiclient.discovery", "dask")
    httplib2 = require("httplib2", "dask")
    version, _path = SERVICES[api]
    kwargs: dict[str, Any] = {"cache_discovery": False, "static_discovery": True}
    if endpoint:
        kwargs["client_options"] = {"api_endpoint": service_url(api, endpoint)}
    if endpoint and is_loopback_endpoint(endpoint):
        from google.auth.credentials import AnonymousCredentials

        credentials: Any = AnonymousCredentials()  # type: ignore[no-untyped-call]
    elif service_account_info:
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            service_account_info, scopes=_SCOPES
        )
    else:
        import google.auth

        credentials, _ = google.auth.default(scopes=_SCOPES)

    def new_http() -> Any:
        http = httplib2.Http(timeout=timeout)
        from google_auth_httplib2 import AuthorizedHttp  # type: ignore[import-untyped]

        return AuthorizedHttp(credentials, http=http)

    kwargs["http"] = new_http()
    if thread_safe:
        http_request = require("googleapiclient.http", "dask").HttpRequest

        def request_builder(_shared: Any, *args: Any, **kw: Any) -> Any:
            return http_request(new_http(), *args, **kw)

        kwargs["requestBuilder"] = request_builder
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
