"""Scheduler addresses: parsing and classifying (no I/O; imported by messages and probes)."""

from __future__ import annotations

import ipaddress
import re

__all__ = ["is_internal", "parse_address"]

_ADDRESS = re.compile(
    r"^(?P<scheme>[a-z]+)://(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]+)$"
)


def parse_address(address: str) -> tuple[str, str, int]:
    """Split a scheduler address into ``(scheme, host, port)``.

    Args:
        address: ``tcp://HOST:PORT`` or ``tls://HOST:PORT``.

    Returns:
        The scheme, host and port.

    Raises:
        ValueError: The address is malformed (a `ConfigError` when raised from a stack).
    """
    match = _ADDRESS.match(address.strip()) if isinstance(address, str) else None
    if not match:
        msg = (
            f"{address!r} is not a Dask scheduler address; expected tls://HOST:PORT "
            "(or tcp://HOST:PORT), e.g. 'tls://10.0.0.5:8786'"
        )
        raise ValueError(msg)
    scheme, host, port = match.group("scheme"), match.group("host"), int(match.group("port"))
    if scheme not in ("tcp", "tls"):
        msg = f"{address!r}: scheme {scheme!r} is not supported; use tls:// or tcp://"
        raise ValueError(msg)
    if not 0 < port < 65536:
        msg = f"{address!r}: port {port} is out of range 1-65535"
        raise ValueError(msg)
    return scheme, host.strip("[]"), port


def is_internal(host: str) -> bool | None:
    """Whether ``host`` is a private/loopback IP (None when it is a host name)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return ip.is_private or ip.is_loopback
