"""The ``vertex`` Dask backend: Dask inside the flow run's own Vertex AI custom job.

A Vertex AI custom job may have several worker pools whose replicas reach each other; Vertex
gives every replica a ``CLUSTER_SPEC`` environment variable listing them all::

    {"cluster": {"workerpool0": ["host-0:2222"], "workerpool1": ["host-1:2222", ...]},
     "task": {"type": "workerpool1", "index": 0}}

The flow run is replica 0 of ``workerpool0``. With ``dask.backend = "vertex"`` its
`vertex_cluster` (the runner's cluster factory) issues per-job TLS certificates
(`oxeo_flows.clusters.pki`: one CA, its key discarded), puts the workers' part in a per-job
Secret Manager secret, starts a TLS scheduler in-process on its own address and waits, within
``dask.start-timeout``, for the replicas of ``workerpool1``. Those run
``python -m oxeo_flows.vertex_worker`` (`run_worker`): read ``CLUSTER_SPEC``, wait for the
secret, connect to the scheduler with the worker certificate, and exit when it goes. Closing
the cluster deletes the secret; the job ends when replica 0 (the flow run) ends.

Nothing secret is in the job spec: the workers' command carries the project, the scheduler
port and the deadline; the certificates travel through Secret Manager, readable by the job's
service account.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows.clusters.vm_secrets import JobSecretStore
from oxeo_flows.errors import ClusterStartTimeout, ConfigError

if TYPE_CHECKING:
    from oxeo_flows.clusters.pki import ClusterCertificates

__all__ = [
    "CLUSTER_SPEC_ENV",
    "ClusterSpec",
    "JobSecretStore",
    "run_worker",
    "vertex_cluster",
]

CLUSTER_SPEC_ENV = "CLUSTER_SPEC"
#: Set by Vertex AI in every replica of a custom job.
JOB_ID_ENV = "CLOUD_ML_JOB_ID"
SCHEDULER_POOL = "workerpool0"
WORKER_POOL = "workerpool1"


@dataclass(frozen=True)
class ClusterSpec:
    """The replicas of this Vertex job, and which one this process is (from ``CLUSTER_SPEC``).

    Attributes:
        pools: Worker pool name -> the ``host:port`` of each replica.
        task_type: This replica's worker pool, e.g. ``workerpool1``.
        task_index: This replica's index in its pool.
        job_id: The job's id (``CLOUD_ML_JOB_ID``, else derived from the replica addresses).
    """

    pools: dict[str, list[str]]
    task_type: str
    task_index: int
    job_id: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClusterSpec:
        """Read ``CLUSTER_SPEC`` (and ``CLOUD_ML_JOB_ID``).

        Raises:
            ConfigError: Not set (not inside a multi-pool Vertex job), or malformed.
        """
        env = os.environ if environ is None else environ
        raw = env.get(CLUSTER_SPEC_ENV)
        if not raw:
            msg = (
                "dask.backend 'vertex' runs Dask inside the flow run's Vertex AI job, but "
                f"{CLUSTER_SPEC_ENV} is not set: this process is not a replica of a Vertex job "
                "with a Dask worker pool. Deploy the flow to the stack's vertex-ai pool (its "
                "template has the worker pool), or use dask.backend = 'local' on a laptop"
            )
            raise ConfigError(msg)
        try:
            data = json.loads(raw)
            pools = {str(k): [str(a) for a in v] for k, v in data["cluster"].items()}
            task = data["task"]
            task_type, task_index = str(task["type"]), int(task["index"])
            pools[task_type][task_index]  # this replica must be listed
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            msg = f"{CLUSTER_SPEC_ENV} is not a Vertex cluster spec ({type(exc).__name__}: {exc})"
            raise ConfigError(msg) from None
        job_id = (
            env.get(JOB_ID_ENV)
            or hashlib.sha256(json.dumps(pools, sort_keys=True).encode()).hexdigest()[:20]
        )
        return cls(pools=pools, task_type=task_type, task_index=task_index, job_id=job_id)

    @staticmethod
    def _host(address: str) -> str:
        return address.rsplit(":", 1)[0].strip("[]")

    @property
    def own_host(self) -> str:
        """This replica's host."""
        return self._host(self.pools[self.task_type][self.task_index])

    @property
    def scheduler_host(self) -> str:
        """The host of replica 0 of ``workerpool0`` (the flow run, hosting the scheduler)."""
        return self._host(self.pools[SCHEDULER_POOL][0])

    @property
    def worker_hosts(self) -> list[str]:
        """The hosts of the Dask worker replicas (``workerpool1``)."""
        return [self._host(a) for a in self.pools.get(WORKER_POOL, [])]

    @property
    def secret_id(self) -> str:
        """The per-job Secret Manager secret holding the workers' TLS bundle."""
        return "oxeo-dask-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.job_id)[:200]


def _cluster_class() -> type[Any]:
    distributed = require("distributed", "dask")

    class VertexJobCluster(distributed.LocalCluster):  # type: ignore[misc,name-defined]
        """A TLS scheduler on replica 0 of the Vertex job, with no local workers."""

        def __init__(
            self,
            *,
            spec: ClusterSpec,
            certs: ClusterCertificates,
            store: JobSecretStore,
            port: int,
        ) -> None:
            self._oxeo_store: JobSecretStore | None = store
            self._oxeo_secret = spec.secret_id
            super().__init__(
                n_workers=0,
                host=spec.own_host,
                scheduler_port=port,
                protocol="tls://",
                security=certs.security_for("scheduler", "client"),
                dashboard_address=None,
                name=f"vertex-{spec.job_id}",
            )

        def close(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().close(*args, **kwargs)
            finally:
                store, self._oxeo_store = self._oxeo_store, None
                if store is not None:
                    store.delete(self._oxeo_secret)

    return VertexJobCluster


def vertex_cluster(
    *,
    n_workers: int,
    project: str,
    start_timeout: float,
    scheduler_port: int = 8786,
    secret_manager_endpoint: str | None = None,
    **_: Any,
) -> Any:
    """Start the scheduler of this Vertex job and wait for its worker replicas.

    The cluster factory `dask_runner` uses for ``dask.backend = "vertex"`` (module level, so
    Prefect pickles it by reference).

    Args:
        n_workers: Worker replicas to wait for (``dask.vertex.worker-count``).
        project: Project of the per-job TLS secret.
        start_timeout: Seconds for every worker replica to join.
        scheduler_port: Port of the scheduler on this replica.
        secret_manager_endpoint: ``HOST:PORT`` of Secret Manager (loopback: plaintext).

    Returns:
        A ``distributed.LocalCluster`` (no local workers) whose close deletes the secret.

    Raises:
        ConfigError: Not replica 0 of a Vertex job with a Dask worker pool.
        ClusterStartTimeout: Not every worker replica joined in time (the message names the
            replicas expected and those that joined); the secret is deleted.
    """
    from oxeo_flows.clusters.pki import issue_certificates

    spec = ClusterSpec.from_env()
    if (spec.task_type, spec.task_index) != (SCHEDULER_POOL, 0):
        msg = (
            f"this is replica {spec.task_index} of {spec.task_type}; the flow run (and the Dask "
            f"scheduler) runs on replica 0 of {SCHEDULER_POOL}"
        )
        raise ConfigError(msg)
    certs = issue_certificates(f"vertex-{spec.job_id}")
    store = JobSecretStore(project, secret_manager_endpoint)
    store.create(spec.secret_id, certs.worker_bundle())
    try:
        cluster = _cluster_class()(spec=spec, certs=certs, store=store, port=scheduler_port)
    except BaseException:
        store.delete(spec.secret_id)
        raise
    try:
        cluster.wait_for_workers(n_workers, timeout=start_timeout)
    except TimeoutError:
        joined = sorted(str(w.get("name")) for w in cluster.scheduler_info["workers"].values())
        cluster.close()
        msg = (
            f"{len(joined)} of {n_workers} Dask worker replicas joined the scheduler on "
            f"{spec.scheduler_host}:{scheduler_port} within {start_timeout:g} s. Expected "
            f"(CLUSTER_SPEC {WORKER_POOL}): {', '.join(spec.worker_hosts) or '(none)'}; "
            f"joined: {', '.join(joined) or '(none)'}. Check the worker replicas' logs of the "
            "Vertex job (their image must have oxeo-flows[gcp,dask], and their service account "
            f"read access to the secret {spec.secret_id!r} in project {project!r})"
        )
        raise ClusterStartTimeout(msg) from None
    except BaseException:
        cluster.close()
        raise
    return cluster


def _wait_for_bundle(read: Callable[[str], bytes | None], secret_id: str, deadline: float) -> bytes:
    delay = 0.2
    while True:
        bundle = read(secret_id)
        if bundle is not None:
            return bundle
        if time.monotonic() + delay > deadline:
            msg = (
                f"the per-job Dask TLS secret {secret_id!r} did not appear in time: the flow run "
                "(replica 0) creates it when its Dask runner starts"
            )
            raise ClusterStartTimeout(msg)
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def run_worker(
    *,
    project: str,
    port: int = 8786,
    timeout: float = 600.0,
    secret_manager_endpoint: str | None = None,
    nthreads: int | None = None,
) -> int:
    """Run this replica as a Dask worker of the job's scheduler until the scheduler goes.

    Args:
        project: Project of the per-job TLS secret.
        port: The scheduler's port on replica 0.
        timeout: Seconds to wait for the secret and the scheduler.
        secret_manager_endpoint: ``HOST:PORT`` of Secret Manager (loopback: plaintext).
        nthreads: Threads (default: the CPUs of this replica).

    Returns:
        The process exit code: 0 when the scheduler closed the worker.
    """
    import asyncio

    from oxeo_flows.clusters.pki import security_from_bundle

    distributed = require("distributed", "dask")
    spec = ClusterSpec.from_env()
    deadline = time.monotonic() + timeout
    from oxeo_flows.clusters.vm_read import read_gcp_secret

    def read(secret_id: str) -> bytes | None:
        # Without the Secret Manager SDK: 0.4 s less on each replica's start (vm_read).
        return read_gcp_secret(project, secret_id, secret_manager_endpoint)

    security = security_from_bundle(_wait_for_bundle(read, spec.secret_id, deadline))
    address = f"tls://{spec.scheduler_host}:{port}"
    name = f"{spec.task_type}-{spec.task_index}"

    async def serve() -> None:
        async with distributed.Worker(
            address,
            security=security,
            host=spec.own_host,
            nthreads=nthreads or os.cpu_count() or 1,
            name=name,
            death_timeout=max(deadline - time.monotonic(), 1.0),
            dashboard=False,
        ) as worker:
            print(f"oxeo-flows vertex worker {name}: joined {address}", file=sys.stderr, flush=True)
            await worker.finished()

    asyncio.run(serve())
    return 0
