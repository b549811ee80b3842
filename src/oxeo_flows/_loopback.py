"""The one loopback rule: which endpoints are this machine (dialed in plaintext, anonymously).

``localhost``, ``127.0.0.0/8`` and ``::1`` are loopback; anything else is not. Used by every
adapter that dials a Google endpoint (Secret Manager, the REST APIs, Compute for Dask clusters)
and by `oxeo-flows doctor`.
"""

from __future__ import annotations

import ipaddress

__all__ = ["endpoint_host", "is_loopback_endpoint", "is_loopback_host"]


def endpoint_host(endpoint: str) -> str:
    """The host of ``[scheme://]HOST[:PORT][/path]`` (brackets of an IPv6 literal removed)."""
    text = endpoint.split("://", 1)[-1].split("/", 1)[0]
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    if text.count(":") == 1:
        return text.rsplit(":", 1)[0]
    return text


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (``[::1]`` accepted)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_endpoint(endpoint: str) -> bool:
    """True if ``endpoint`` (``[scheme://]HOST[:PORT]``) is on the loopback interface."""
    return is_loopback_host(endpoint_host(endpoint))
