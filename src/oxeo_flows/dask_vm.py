"""``python -m oxeo_flows.dask_vm ROLE MODULE [ARGS...]``: a GCE/EC2 Dask VM's container command.

The ``gcp`` and ``ec2`` Dask backends run each VM's Dask command (``distributed.cli.
dask_scheduler``, ``distributed.cli.dask_spec``, ...) through this module, so the image must
contain oxeo-flows (``oxeo-flows[gcp,dask]`` or ``oxeo-flows[aws,dask]``). It:

1. reads ``OXEO_DASK_TLS_SECRET`` (``gcp:PROJECT/BASE`` or ``aws:REGION/BASE``; a name, not a
   secret) and the optional ``OXEO_DASK_TLS_ENDPOINT``;
2. fetches the secret ``BASE-ROLE`` with the VM's own credentials (the service account via the
   metadata server / the instance role), without a cloud SDK (`oxeo_flows.clusters.vm_read`:
   0.4 s less per VM process);
3. puts the CA certificate and the role's certificate and key into this process's dask
   config, in memory;
4. runs ``MODULE`` as ``__main__`` with ``ARGS``, in this process.

For a Nanny worker it first starts the Nanny's forkserver (`oxeo_flows.clusters.
vm_forkserver`): the worker process's interpreter and imports happen while this one starts.
A worker without a Nanny (``dask.nanny = false``) first re-executes itself with the Nanny's
pre-spawn environment (``PYTHONHASHSEED`` and the rest), which no Nanny gives it, so that it
hashes like every other worker. The secret is read in a thread while ``distributed`` is
imported.

No key file is written by this module. ``distributed`` itself, to build an SSL context from
in-memory PEM, writes the certificate and key into a private temporary directory (mode 0700)
for the instant of ``load_cert_chain`` and removes it at once. A Nanny's worker process gets
the config through its process pipe (spawn or forkserver), not its command line or
environment.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import runpy
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

# Nothing else at import: a Nanny worker starts its forkserver first (`main`).

if TYPE_CHECKING:
    from oxeo_flows.clusters.pki import Role

__all__ = ["fetch_role_bundle", "main"]

_ROLES = ("scheduler", "worker")


def _die(message: str) -> int:
    print(f"oxeo-flows dask_vm: {message}", file=sys.stderr, flush=True)
    return 2


def fetch_role_bundle(location: str, role: str, *, endpoint: str | None, timeout: float) -> bytes:
    """Read ``role``'s TLS bundle from ``location`` (``gcp:PROJECT/BASE`` / ``aws:REGION/BASE``).

    Transient errors are retried until ``timeout``.

    Raises:
        LookupError: The secret does not exist (the cluster was stopped, or never started).
        SecretAccessError: It cannot be read (permissions) after retries.
        SecretIntegrityError: Its payload stays corrupted after retries.
    """
    from oxeo_flows.clusters.vm_read import read_vm_secret
    from oxeo_flows.errors import SecretAccessError, SecretIntegrityError

    where, _, base = location.rpartition("/")
    secret_id = f"{base}-{role}"
    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        try:
            bundle = read_vm_secret(where, secret_id, endpoint, timeout=min(10.0, timeout))
        except (SecretAccessError, SecretIntegrityError):
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        if bundle is None:
            msg = f"the Dask TLS secret {secret_id!r} ({where}) does not exist"
            raise LookupError(msg)
        return bundle


def main(argv: list[str] | None = None) -> int:
    """Fetch this VM's TLS material and run the Dask command (see the module docs).

    Returns:
        The exit code (2 when the material cannot be had; the command's own otherwise).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] not in _ROLES:
        return _die("usage: python -m oxeo_flows.dask_vm {scheduler,worker} MODULE [ARGS...]")
    role: Role = "scheduler" if args[0] == "scheduler" else "worker"
    module, rest = args[1], args[2:]
    began = time.monotonic()
    from oxeo_flows.clusters import vm_forkserver

    plain = role == "worker" and vm_forkserver.plain_worker([module, *rest])
    if plain:
        vm_forkserver.reexec("oxeo_flows.dask_vm", args, vm_forkserver.reexec_env())
    forkserver = vm_forkserver.start([module, *rest]) if role == "worker" else None
    from oxeo_flows.clusters.vm_secrets import ENV_ENDPOINT, ENV_SECRET, role_config
    from oxeo_flows.errors import OxeoFlowsError

    location = os.environ.get(ENV_SECRET)
    if not location or "/" not in location:
        return _die(f"{ENV_SECRET} is not set (expected gcp:PROJECT/BASE or aws:REGION/BASE)")

    got: dict[str, Any] = {}

    def read() -> None:
        try:
            got["bundle"] = fetch_role_bundle(
                location, role, endpoint=os.environ.get(ENV_ENDPOINT) or None, timeout=120.0
            )
        except BaseException as exc:  # re-raised below, in the main thread
            got["error"] = exc
        got["read"] = time.monotonic() - began

    # The secret is read while distributed is imported: the read waits on the network.
    reader = threading.Thread(target=read, name="oxeo-dask-vm-tls", daemon=True)
    reader.start()
    with contextlib.suppress(ImportError):  # the command itself reports a broken image
        importlib.import_module("distributed")
    imported = time.monotonic() - began
    if plain:
        vm_forkserver.reexec("oxeo_flows.dask_vm", args, vm_forkserver.recheck_env())
    reader.join()
    try:
        if "error" in got:
            raise got.pop("error")
        bundle = got.pop("bundle")
        from oxeo_flows.clusters.pki import parse_bundle

        certs = parse_bundle(bundle, role)
    except (LookupError, OxeoFlowsError) as exc:
        return _die(str(exc))
    del bundle
    import dask.config

    forked = vm_forkserver.adopt(forkserver)
    dask.config.set(role_config(certs, role))
    del certs
    print(
        f"oxeo-flows dask_vm: {role} TLS material loaded from {location} in "
        f"{got['read']:.2f} s, distributed imported in {imported:.2f} s"
        + ("; the Nanny forks its worker from a forkserver" if forked else "")
        + (
            "; no Nanny: the worker runs in this process (PYTHONHASHSEED="
            f"{os.environ.get('PYTHONHASHSEED', '')})"
            if plain
            else ""
        ),
        file=sys.stderr,
    )
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
