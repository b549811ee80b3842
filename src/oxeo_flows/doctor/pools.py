"""Checks that depend on the kinds of work pool a stack uses (process, docker, vertex-ai).

`check_pools` is the one entry point: which extras those kinds need, whether each pool's job
spec builds, and the Docker-on-EC2 metadata hop-limit trap. The kinds, their extras and their
job builders come from the one registry, `oxeo_flows.pools.kinds`.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from oxeo_flows.errors import OxeoFlowsError

if TYPE_CHECKING:
    from oxeo_flows.doctor.report import Findings
    from oxeo_flows.pools.kinds import PoolKind
    from oxeo_flows.stack import Stack

__all__ = ["check_pools", "uses_docker", "uses_kind", "uses_vertex"]


def _pools(stack: Stack) -> list[tuple[str, str | None, PoolKind]]:
    """``(label, declared pool or None, kind)`` for the runner's pool and every ``[pools]``."""
    from oxeo_flows.pools.kinds import pool_kind, pool_target

    name, kind = pool_target(stack)
    out: list[tuple[str, str | None, PoolKind]] = []
    if name not in stack.pools:
        out.append((f"[{kind.section}]" if kind.section else f"pool {name}", None, kind))
    out += [(f"pools.{n}", n, pool_kind(p.type)) for n, p in stack.pools.items()]
    return out


def uses_kind(stack: Stack, type: str) -> bool:
    """True when the stack runs flows on a pool of kind ``type`` (its runner's or a declared)."""
    return any(kind.type == type for _, _, kind in _pools(stack))


def uses_vertex(stack: Stack) -> bool:
    """True when the stack runs flows on Vertex AI (runner or a vertex-ai pool)."""
    return uses_kind(stack, "vertex-ai")


def uses_docker(stack: Stack) -> bool:
    """True when the stack runs flows in Docker (runner or a docker pool)."""
    return uses_kind(stack, "docker")


def check_pools(stack: Stack, out: Findings) -> None:
    """Extras, vertex-ai job specs and Docker-on-EC2, for the pool kinds the stack uses."""
    _check_extras(stack, out)
    _check_jobs(stack, out)
    _check_docker_on_ec2(stack, out)


def _needed_extras(stack: Stack) -> list[tuple[str, str, str]]:
    needs: list[tuple[str, str, str]] = []  # (module, extra, why)
    worker_modules = {"gcp": "prefect_gcp", "docker": "prefect_docker", "aws": "prefect_aws"}
    for _, _, kind in _pools(stack):
        if kind.extra is not None:
            needs.append((worker_modules[kind.extra], kind.extra, f"{kind.type} work pools"))
    if stack.dask.backend != "local" or stack.runner != "process":
        needs.append(("prefect_dask", "dask", "the Dask task runner"))
    if stack.dask.backend == "gcp":
        needs.append(("dask_cloudprovider", "dask", "Dask clusters on GCE"))
    if stack.dask.backend == "ec2":
        needs.append(("dask_cloudprovider", "dask", "Dask clusters on EC2"))
    if stack.storage.bucket or "aws" in stack.secrets.sources:
        needs.append(("prefect_aws", "aws", "S3 storage / AWS secrets"))
    if "gcp" in stack.secrets.sources:
        needs.append(("google.cloud.secretmanager", "gcp", "GCP Secret Manager secrets"))
    return needs


def _check_extras(stack: Stack, out: Findings) -> None:
    needs = _needed_extras(stack)
    seen: set[str] = set()
    for module, extra, why in needs:
        if module in seen:
            continue
        seen.add(module)
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            out.add("extras", module, "ok", f"{module} is installed ({why})")
        else:
            out.add(
                "extras",
                module,
                "fail",
                f"{module} is not installed; needed for {why}",
                f"pip install 'oxeo-flows[{extra}]'",
            )
    if not needs:
        out.add("extras", "none-needed", "ok", "the stack needs no optional extra")


def _check_jobs(stack: Stack, out: Findings) -> None:
    import warnings

    for label, pool, kind in _pools(stack):
        group = "vertex" if kind.type == "vertex-ai" else kind.type
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kind.build_job(stack, pool, {})
        except OxeoFlowsError as exc:
            out.add(
                group,
                f"job {label}",
                "fail",
                str(exc).splitlines()[0][:400],
                f"fix {label} in the stack (see the message)",
            )
        else:
            out.add(group, f"job {label}", "ok", "the job spec builds")


def _check_docker_on_ec2(stack: Stack, out: Findings) -> None:
    if not (uses_docker(stack) and stack.aws.region):
        return
    out.add(
        "docker",
        "ec2-metadata-hop-limit",
        "warn",
        "Docker on EC2: containers reach the instance metadata service one network hop further "
        "than the host; with IMDSv2 (http-tokens = required) and the default hop limit of 1, "
        "boto3 in the flow container gets no instance-role credentials (NoCredentialsError)",
        "aws ec2 modify-instance-metadata-options --instance-id <ID> --http-tokens required "
        "--http-put-response-hop-limit 2 "
        "(Terraform: metadata_options { http_put_response_hop_limit = 2 })",
    )
