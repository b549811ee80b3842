"""Dask checks: TLS on, no public IPs, a start deadline."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oxeo_flows.doctor.report import Findings
    from oxeo_flows.stack import Stack

__all__ = ["check_dask"]


def check_dask(stack: Stack, out: Findings) -> None:
    """TLS, private addresses and a start deadline for the Dask backend."""
    from oxeo_flows.clusters._deadline import DEFAULT_START_TIMEOUT

    dask = stack.dask
    if dask.backend == "local":
        return
    _check_tls(stack, out)
    public = (dask.backend == "gcp" and dask.gcp.public_ip) or (
        dask.backend == "ec2" and dask.ec2.public_ip
    )
    if public:
        key = f"dask.{dask.backend}.public-ip"
        out.add(
            "dask",
            "public-ip",
            "fail",
            f"{key} is true: scheduler and workers get public IPs",
            f"remove {key} = true; reach the scheduler over the private network",
        )
    elif dask.backend in ("gcp", "ec2"):
        out.add("dask", "public-ip", "ok", "VMs get private addresses only")
    if dask.start_timeout:
        out.add(
            "dask", "deadline", "ok", f"clusters must be reachable within {dask.start_timeout:g} s"
        )
    else:
        out.add(
            "dask",
            "deadline",
            "warn",
            f"dask.start-timeout is not set; the built-in "
            f"{DEFAULT_START_TIMEOUT[dask.backend]:g} s applies",
            "set dask.start-timeout to what your cluster needs (seconds)",
        )


def _check_tls(stack: Stack, out: Findings) -> None:
    dask = stack.dask
    if dask.backend == "address":
        address = dask.address or ""
        if address.startswith("tls://") and dask.tls.material:
            out.add("dask", "tls", "ok", f"{address} with TLS certificates")
        elif address.startswith("tls://"):
            out.add(
                "dask",
                "tls",
                "warn",
                f"{address} is TLS but no CA/certificate/key is configured",
                "set dask.tls.ca-file/cert-file/key-file (or the -secret variants)",
            )
        else:
            out.add(
                "dask",
                "tls",
                "fail",
                f"{address} is not TLS: task data and pickles travel in the clear",
                "run the scheduler with TLS and use a tls:// address with dask.tls settings",
            )
    elif dask.tls.enabled is False:
        out.add(
            "dask",
            "tls",
            "fail",
            f"dask.tls.enabled is false for the {dask.backend} backend",
            "remove dask.tls.enabled = false (temporary certificates are created per cluster)",
        )
    else:
        out.add("dask", "tls", "ok", "temporary TLS certificates per cluster")
