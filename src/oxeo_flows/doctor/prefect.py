"""Prefect API checks: configured, not exposed, answering, and a compatible version."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from oxeo_flows._loopback import is_loopback_host

if TYPE_CHECKING:
    from oxeo_flows.doctor.report import Findings
    from oxeo_flows.stack import Stack

__all__ = ["check_prefect"]

_HTTP_TIMEOUT = 10.0
_AUTH_FIX = (
    "serve it behind TLS and set PREFECT_SERVER_API_AUTH_STRING on the server and "
    "PREFECT_API_AUTH_STRING on clients (or bind it to 127.0.0.1)"
)


def _secret_text(value: Any) -> str:
    return str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)


def _credential() -> tuple[str, dict[str, str]]:
    """(``"API key"`` / ``"auth string"`` / ``""``, the headers that send it)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    key = PREFECT_API_KEY.value()
    if key:
        return "API key", {"Authorization": "Bearer " + _secret_text(key)}
    auth = PREFECT_API_AUTH_STRING.value()
    if auth:
        raw = _secret_text(auth)
        return "auth string", {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}
    return "", {}


def check_prefect(stack: Stack, out: Findings) -> None:
    """``PREFECT_API_URL`` set, its exposure, the API answering, server and client versions."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        out.add(
            "prefect",
            "api-url",
            "warn",
            "PREFECT_API_URL is not set: every command starts a temporary local server, so "
            "deployments and pools would not persist",
            "set PREFECT_API_URL (prefect config set PREFECT_API_URL=https://.../api)",
        )
        return
    url = str(url).rstrip("/")
    kind, headers = _credential()
    _check_exposure(url, kind, out)
    version_text = _check_answers(url, headers, out)
    if version_text is not None:
        _check_version(version_text, out)


def _check_exposure(url: str, kind: str, out: Findings) -> None:
    from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY

    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.netloc}"
    loopback = is_loopback_host(parts.hostname or "")
    if parts.scheme == "http" and not loopback and kind:
        out.add(
            "prefect",
            "exposure",
            "warn",
            f"the API at {where} is plain http on a non-loopback address: the {kind} "
            "travels in clear text with every request",
            "serve the API over https (a TLS proxy in front of it), or reach it over 127.0.0.1",
        )
    elif parts.scheme == "http" and not loopback:
        out.add(
            "prefect",
            "exposure",
            "warn",
            f"the API at {where} is plain http on a non-loopback address with no auth string: "
            "anyone who can reach it controls your flows",
            _AUTH_FIX,
        )
    elif parts.scheme == "https" and PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value():
        out.add(
            "prefect",
            "exposure",
            "warn",
            f"the API at {where} is https but PREFECT_API_TLS_INSECURE_SKIP_VERIFY is true: "
            "the server's certificate is not checked, so anyone in the path can impersonate it"
            + (f" and read the {kind}" if kind else ""),
            "unset PREFECT_API_TLS_INSECURE_SKIP_VERIFY; for a private CA set "
            "PREFECT_API_SSL_CERT_FILE to its certificate",
        )
    else:
        how = "loopback" if loopback else ("authenticated, TLS" if kind else "TLS")
        out.add("prefect", "exposure", "ok", f"{where} ({how})")


def _check_answers(url: str, headers: dict[str, str], out: Findings) -> str | None:
    import httpx
    from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY

    verify = not PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value()
    try:
        with httpx.Client(timeout=_HTTP_TIMEOUT, headers=headers, verify=verify) as client:
            health = client.get(f"{url}/health")
            if health.status_code in (401, 403):
                out.add(
                    "prefect",
                    "answers",
                    "fail",
                    f"the API at {url} refused us (HTTP {health.status_code})",
                    "set PREFECT_API_KEY (Prefect Cloud) or PREFECT_API_AUTH_STRING (self-hosted)",
                )
                return None
            health.raise_for_status()
            version_text = str(client.get(f"{url}/admin/version").json())
    except (httpx.HTTPError, ValueError) as exc:
        out.add(
            "prefect",
            "answers",
            "fail",
            f"the API at {url} does not answer: {type(exc).__name__}: {exc}",
            "start the server (prefect server start) or fix PREFECT_API_URL",
        )
        return None
    out.add("prefect", "answers", "ok", f"{url} answers")
    return version_text


def _check_version(version_text: str, out: Findings) -> None:
    import prefect
    from packaging.version import Version

    client_version = Version(prefect.__version__)
    try:
        server_version = Version(version_text)
    except ValueError:
        out.add(
            "prefect",
            "version",
            "warn",
            f"the server reports an unreadable version {version_text!r}",
            "upgrade the server to Prefect 3",
        )
        return
    major = client_version.major
    if server_version.major != major:
        out.add(
            "prefect",
            "version",
            "fail",
            f"server {server_version} and client {client_version} have different major versions",
            f"run a Prefect {major}.x server (pip install 'prefect>={major},<{major + 1}')",
        )
    elif server_version < Version(f"{major}.{client_version.minor}"):
        out.add(
            "prefect",
            "version",
            "warn",
            f"server {server_version} is older than client {client_version}",
            f"upgrade the server to {client_version} or newer",
        )
    else:
        out.add("prefect", "version", "ok", f"server {server_version}, client {client_version}")
