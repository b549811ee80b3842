"""Scheduler addresses: parsing and classifying (no I/O; imported by messages and probes)."""

from __future__ import annotations

import ipaddress

from oxeo_flows.network import parse_scheduler_address

__all__ = ["is_internal", "parse_address"]

#: The one parser of scheduler addresses (pure, in the network specs; the stack uses it too).
parse_address = parse_scheduler_address


def is_internal(host: str) -> bool | None:
    """Whether ``host`` is a private/loopback IP (None when it is a host name)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return ip.is_private or ip.is_loopback
