"""TLS material for Dask: from files, from secrets, or temporary per cluster.

Nothing here touches the process-wide dask configuration: certificates travel in
`distributed.Security` objects (in memory), so a later cluster in the same process does not
inherit them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows.errors import ConfigError

if TYPE_CHECKING:
    from distributed.security import Security

    from oxeo_flows.stack import DaskTlsSection, Stack

__all__ = ["client_security", "temporary_security"]

_ROLES = ("client", "scheduler", "worker")


def _read_file(path: str, key: str) -> str:
    expanded = os.path.expanduser(path)
    if not os.path.isfile(expanded):
        item = key.split("-", maxsplit=1)[0]
        msg = (
            f"dask.tls.{key} is {path!r}, which is not a file; "
            f"fix the path or use dask.tls.{item}-secret"
        )
        raise ConfigError(msg)
    return expanded


def client_security(tls: DaskTlsSection, *, stack: Stack | str | None = None) -> Security | None:
    """A `distributed.Security` for connecting to an existing ``tls://`` scheduler.

    Files are passed by path. Secrets are loaded with `load_secret` and kept in memory (the
    key is only ever written by `distributed` into a private temporary directory while the
    SSL context is built, then removed).

    Args:
        tls: The ``[dask.tls]`` section.
        stack: The stack (or stack name) whose secret sources to use.

    Returns:
        The security object, or None when no TLS material is configured.

    Raises:
        ConfigError: A file is missing.
        SecretError: A secret could not be loaded.
    """
    if not tls.material:
        return None
    security_mod = require("distributed.security", "dask")
    values: dict[str, str] = {}
    for item in ("ca", "cert", "key"):
        path = getattr(tls, f"{item}_file")
        if path:
            values[item] = _read_file(path, f"{item}-file")
            continue
        name = getattr(tls, f"{item}_secret")
        from oxeo_flows.secrets import load_secret

        text = load_secret(name, stack=stack).get_secret_value()
        if "-----BEGIN" not in text:
            msg = f"secret {name!r} (dask.tls.{item}-secret) does not contain a PEM block"
            raise ConfigError(msg)
        # distributed tells in-memory PEM from a path by the newline.
        values[item] = text if text.endswith("\n") else text + "\n"
    security: Security = security_mod.Security(
        tls_ca_file=values["ca"],
        tls_client_cert=values["cert"],
        tls_client_key=values["key"],
        require_encryption=True,
    )
    return security


def temporary_security() -> tuple[Security, dict[str, Any]]:
    """Fresh self-signed TLS material for one cluster.

    Returns:
        ``(security, config)``: the client-side `Security` (in memory; it does not set
        ``require-encryption`` in the process, the ``tls://`` address does the encrypting),
        and the dask config the scheduler and workers need, to ship to the VMs only.
    """
    security_mod = require("distributed.security", "dask")
    temp = security_mod.Security.temporary()
    fields = {
        "tls_ca_file": temp.tls_ca_file,
        **{
            f"tls_{role}_{kind}": getattr(temp, f"tls_{role}_{kind}")
            for role in _ROLES
            for kind in ("cert", "key")
        },
    }
    # require_encryption=False keeps VMCluster from writing the certificates into the global
    # dask config; every address is tls:// so the connections are encrypted anyway.
    client: Security = security_mod.Security(require_encryption=False, **fields)
    remote = {
        "distributed.comm.default-scheme": "tls",
        "distributed.comm.require-encryption": True,
        "distributed.comm.tls.ca-file": temp.tls_ca_file,
        **{
            f"distributed.comm.tls.{role}.{kind}": getattr(temp, f"tls_{role}_{kind}")
            for role in _ROLES
            for kind in ("cert", "key")
        },
    }
    return client, remote
