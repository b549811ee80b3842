"""A loopback guard: refuse every connection and name lookup that would leave this machine.

`install` adds a ``sys.addaudit`` hook (audit hooks cannot be removed, so the hook checks a
flag that `enable` / `disable` set) on ``socket.connect``, ``socket.sendto``,
``socket.getaddrinfo`` and ``socket.gethostbyname``. Allowed: ``127.0.0.0/8``, ``::1``,
IPv4-mapped loopback, Unix sockets, ``localhost`` and this machine's own host name. Anything
else raises `LoopbackViolation` at the call and is recorded in `violations` (so a library that
swallows the error still fails the test: the pytest plugin checks the record after each test).

Every process the emulators start runs with ``OXEO_LOOPBACK_GUARD=1`` and the directory
of a ``sitecustomize`` module first on ``PYTHONPATH``; that module loads this file by path
(without importing ``oxeo_flows``) and installs the guard before any user code runs. A
violation there is written to stderr (the VM's serial console, the job's log).

This module imports the standard library only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
import threading
from typing import Any

__all__ = [
    "ENV_FLAG",
    "LoopbackViolation",
    "disable",
    "enable",
    "install",
    "is_enabled",
    "site_dir",
    "violations",
]

#: Environment variable that makes an emulated process install the guard at start-up.
ENV_FLAG = "OXEO_LOOPBACK_GUARD"

_state: dict[str, Any] = {"installed": False, "enabled": False}
_lock = threading.Lock()
#: Every refused destination, in order (``"connect 10.0.0.1:80"``, ``"getaddrinfo example.com"``).
violations: list[str] = []


class LoopbackViolation(ConnectionRefusedError):
    """A connection or name lookup outside the loopback range was attempted."""


def _own_names() -> set[str]:
    names = {"localhost", "localhost.localdomain", "ip6-localhost"}
    with contextlib.suppress(OSError):
        names.add(socket.gethostname().lower())
    return names


def _host_allowed(host: Any) -> bool:
    if host is None or host in ("", b""):
        return True  # a passive (bind) lookup
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    text = str(host).strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text.lower() in _own_names()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _address_allowed(address: Any) -> bool:
    if isinstance(address, (str, bytes)):
        return True  # AF_UNIX path
    if isinstance(address, tuple) and address:
        host = address[0]
        if isinstance(host, int):  # AF_NETLINK and friends
            return True
        return _host_allowed(host)
    return True


def _refuse(what: str) -> None:
    with _lock:
        violations.append(what)
    msg = (
        f"loopback guard: refused {what}; emulated tests may only reach 127.0.0.0/8 and ::1 "
        "(point the endpoint at an emulator, or set the metadata env vars)"
    )
    if os.environ.get(ENV_FLAG):
        print(msg, file=sys.stderr, flush=True)
    raise LoopbackViolation(msg)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _state["enabled"]:
        return
    if event in ("socket.connect", "socket.sendto"):
        address = args[1] if len(args) > 1 else None
        if not _address_allowed(address):
            _refuse(f"{event.split('.', 1)[1]} {address!r}")
    elif event == "socket.getaddrinfo":
        if not _host_allowed(args[0]):
            _refuse(f"getaddrinfo {args[0]!r}")
    elif (
        event in ("socket.gethostbyname", "socket.gethostbyaddr")
        and args
        and not _host_allowed(args[0])
    ):
        _refuse(f"{event.split('.', 1)[1]} {args[0]!r}")


def install(*, enabled: bool = True) -> None:
    """Add the audit hook to this process (once) and enable it."""
    with _lock:
        if not _state["installed"]:
            sys.addaudithook(_hook)
            _state["installed"] = True
    _state["enabled"] = enabled


def enable() -> None:
    """Refuse non-loopback destinations (installs the hook if needed)."""
    install(enabled=True)


def disable() -> None:
    """Allow every destination again (the hook stays, inert)."""
    _state["enabled"] = False


def is_enabled() -> bool:
    """Whether the guard currently refuses non-loopback destinations."""
    return bool(_state["enabled"])


def site_dir() -> str:
    """The directory holding the ``sitecustomize`` that installs the guard in subprocesses."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "_site")
