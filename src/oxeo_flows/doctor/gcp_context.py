"""What every GCP check needs: the stack, its network, the Dask VMs and lazily built clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oxeo_flows.doctor.gcp_firewall import Target

if TYPE_CHECKING:
    from oxeo_flows.network import GcpNetwork
    from oxeo_flows.stack import Stack

__all__ = ["DASK_VM_TAGS", "GcpContext"]

#: Network tags dask-cloudprovider gives every Dask VM (fixed in its GCPInstance).
DASK_VM_TAGS = frozenset({"http-server", "https-server"})


@dataclass
class GcpContext:
    """What every GCP check needs: the stack, its network and lazily built API clients."""

    stack: Stack
    spec: GcpNetwork
    how: str
    _services: dict[str, Any] = field(default_factory=dict)

    @property
    def project(self) -> str:
        """The project that owns the network."""
        return self.spec.network_project

    def api(self, name: str) -> Any:
        """The client of one API of `oxeo_flows.gcp_api.SERVICES`, built once.

        Artifact Registry and Resource Manager use the ``gcp.endpoints.compute`` override (a
        Private Service Connect "all-apis" endpoint serves every Google API on one address).
        """
        from oxeo_flows.gcp_api import rest_service

        if name not in self._services:
            endpoints = self.stack.gcp.endpoints
            endpoint = (
                endpoints.service_networking if name == "servicenetworking" else endpoints.compute
            )
            self._services[name] = rest_service(name, endpoint)
        return self._services[name]

    @property
    def on_gce(self) -> bool:
        """True when Dask runs on GCE VMs in this network."""
        return self.stack.dask.backend == "gcp"

    def dask_vms(self) -> Target | None:
        """The Dask VMs as firewall targets (None when Dask does not run on GCE)."""
        if not self.on_gce:
            return None
        account = self.stack.dask.gcp.service_account or self.stack.gcp.service_account
        if account is None and self.spec.project_number:
            account = f"{self.spec.project_number}-compute@developer.gserviceaccount.com"
        return Target(DASK_VM_TAGS, account)
