"""TLS material for connecting to an existing Dask scheduler: from files or from secrets.

The GCE and EC2 clusters' own per-role certificates are in `oxeo_flows.clusters.pki` and
`oxeo_flows.clusters.vm_secrets`.

Nothing here touches the process-wide dask configuration: certificates travel in
`distributed.Security` objects (in memory), so a later cluster in the same process does not
inherit them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from oxeo_flows._extras import require
from oxeo_flows.errors import ConfigError

if TYPE_CHECKING:
    from distributed.security import Security

    from oxeo_flows.stack import DaskTlsSection, Stack

__all__ = ["check_tls_material", "client_security"]


def _read_file(path: str, key: str) -> str:
    expanded = os.path.expanduser(path)
    if not os.path.isfile(expanded):
        item = key.split("-", maxsplit=1)[0]
        what = "is a directory" if os.path.isdir(expanded) else "does not exist"
        msg = (
            f"dask.tls.{key} is {path!r}, which {what} (not a file); "
            f"fix the path or use dask.tls.{item}-secret"
        )
        raise ConfigError(msg)
    return expanded


def check_tls_material(tls: DaskTlsSection) -> None:
    """Check the client's TLS material settings when the runner is built (nothing is read).

    Raises:
        ConfigError: A ``dask.tls.*-file`` is missing or is a directory, or a
            ``dask.tls.*-secret`` is not a secret reference.
    """
    from oxeo_flows.secrets._base import parse_secret_ref

    for item in ("ca", "cert", "key"):
        path = getattr(tls, f"{item}_file")
        if path is not None:
            _read_file(path, f"{item}-file")
        ref = getattr(tls, f"{item}_secret")
        if ref is not None:
            try:
                parse_secret_ref(ref)
            except ConfigError as exc:
                msg = f"dask.tls.{item}-secret: {exc}"
                raise ConfigError(msg) from None


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
