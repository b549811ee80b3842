"""What Dask VMs without external IPs can reach: Cloud NAT, Private Google Access, registries.

A VM with no external IP reaches Google APIs (Artifact Registry, ``gcr.io``) only through
Private Google Access on its subnetwork, and anything else (Docker Hub, apt and pip during the
bootstrap) only through Cloud NAT on a router of its region. Without them the image pull never
finishes and the cluster "just hangs" until its start deadline.

For an Artifact Registry image (``LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/...``) the
repository must exist and the VMs' service account must be able to read it (a reader role on
the repository or the project).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oxeo_flows.doctor.gcp_context import GcpContext
    from oxeo_flows.doctor.report import Findings

__all__ = ["ArtifactImage", "check_egress", "parse_artifact_image"]

#: dask-cloudprovider's image when ``dask.gcp.docker-image`` is not set (Docker Hub).
DEFAULT_DASK_IMAGE = "daskdev/dask:latest"
_NAT_ALL = {"ALL_SUBNETWORKS_ALL_IP_RANGES", "ALL_SUBNETWORKS_ALL_PRIMARY_IP_RANGES"}
_READ_ROLES = {
    "roles/artifactregistry.reader",
    "roles/artifactregistry.writer",
    "roles/artifactregistry.repoAdmin",
    "roles/artifactregistry.admin",
    "roles/owner",
    "roles/editor",
    "roles/viewer",
}


@dataclass(frozen=True)
class ArtifactImage:
    """An image reference on Artifact Registry."""

    location: str
    project: str
    repository: str

    @property
    def name(self) -> str:
        """``projects/P/locations/L/repositories/R``."""
        return f"projects/{self.project}/locations/{self.location}/repositories/{self.repository}"


def parse_artifact_image(image: str) -> ArtifactImage | None:
    """``LOCATION-docker.pkg.dev/PROJECT/REPO/...`` split, or None for other registries."""
    host, _, rest = image.partition("/")
    parts = rest.split("/")
    if not host.endswith("-docker.pkg.dev") or len(parts) < 3:
        return None
    return ArtifactImage(host.removesuffix("-docker.pkg.dev"), parts[0], parts[1])


def _on_google(image: str) -> bool:
    host = image.split("/", 1)[0] if "/" in image else ""
    return host.endswith(("pkg.dev", "gcr.io"))


def check_egress(ctx: GcpContext, out: Findings, subnet: dict[str, Any] | None) -> None:
    """NAT / Private Google Access for private Dask VMs, then the registries of the images."""
    stack = ctx.stack
    if ctx.on_gce and not stack.dask.gcp.public_ip and subnet is not None:
        _check_nat(ctx, out, subnet)
    if ctx.on_gce:
        _check_registry(ctx, out, "dask.gcp.docker-image", _dask_image(ctx), read_by_vms=True)
    if stack.vertex.image and parse_artifact_image(stack.vertex.image):
        _check_registry(ctx, out, "vertex.image", stack.vertex.image, read_by_vms=False)


def _dask_image(ctx: GcpContext) -> str:
    return ctx.stack.dask.gcp.docker_image or DEFAULT_DASK_IMAGE


def _has_nat(ctx: GcpContext, region: str, subnet_name: str) -> bool | None:
    """True/False, or None when the routers cannot be listed."""
    from oxeo_flows.gcp_api import fetch

    status, page = fetch(ctx.api("compute").routers().list(project=ctx.project, region=region))
    if status != 200:
        return None
    for router in page.get("items", []):
        if not str(router.get("network", "")).endswith(f"/networks/{ctx.spec.network}"):
            continue
        for nat in router.get("nats", []):
            mode = nat.get("sourceSubnetworkIpRangesToNat")
            listed = [str(s.get("name", "")) for s in nat.get("subnetworks", [])]
            if mode in _NAT_ALL or any(s.endswith(f"/subnetworks/{subnet_name}") for s in listed):
                return True
    return False


def _check_nat(ctx: GcpContext, out: Findings, subnet: dict[str, Any]) -> None:
    spec, vm = ctx.spec, ctx.stack.dask.gcp
    region, name = spec.region or "", spec.subnetwork or ""
    image = _dask_image(ctx)
    nat = _has_nat(ctx, region, name)
    pga = bool(subnet.get("privateIpGoogleAccess"))
    needs_internet = not _on_google(image) or (vm.bootstrap and not vm.source_image)
    nat_fix = (
        f"gcloud compute routers create nat-router --network {spec.network} --region {region} && "
        f"gcloud compute routers nats create nat --router nat-router --region {region} "
        "--auto-allocate-nat-external-ips --nat-all-subnet-ip-ranges"
    )
    why = (
        f"image {image} is not on a Google registry"
        if not _on_google(image)
        else "the bootstrap installs packages from the internet (dask.gcp.bootstrap, no "
        "dask.gcp.source-image)"
    )
    if nat is None:
        out.add(
            "gcp-network",
            "egress",
            "warn",
            "cannot list Cloud Routers",
            "grant compute.routers.list",
        )
    elif needs_internet and not nat:
        out.add(
            "gcp-network",
            "egress",
            "fail",
            f"the Dask VMs have no external IP and {region} has no Cloud NAT for {name}, but "
            f"{why}: the VMs would never start Dask",
            nat_fix,
        )
    elif not needs_internet and not (nat or pga):
        out.add(
            "gcp-network",
            "egress",
            "fail",
            f"the Dask VMs have no external IP, and subnetwork {name} has neither Private Google "
            f"Access nor Cloud NAT: they cannot pull {image}",
            f"gcloud compute networks subnets update {name} --region {region} "
            "--enable-private-ip-google-access",
        )
    else:
        via = ", ".join(v for v, on in (("Cloud NAT", nat), ("Private Google Access", pga)) if on)
        out.add("gcp-network", "egress", "ok", f"private Dask VMs reach their image via {via}")


def _check_registry(
    ctx: GcpContext, out: Findings, key: str, image: str, *, read_by_vms: bool
) -> None:
    from oxeo_flows.gcp_api import fetch

    name = f"registry {key}"
    found = parse_artifact_image(image)
    if found is None:
        out.add("gcp-network", name, "ok", f"{image} is not on Artifact Registry (see egress)")
        return
    repos = ctx.api("artifactregistry").projects().locations().repositories()
    status, _ = fetch(repos.get(name=found.name))
    if status == 404:
        out.add(
            "gcp-network",
            name,
            "fail",
            f"{key} {image}: repository {found.name} does not exist",
            f"gcloud artifacts repositories create {found.repository} --repository-format docker "
            f"--location {found.location} --project {found.project}",
        )
        return
    if status != 200:
        out.add(
            "gcp-network",
            name,
            "warn",
            f"cannot read repository {found.name} (HTTP {status})",
            "grant artifactregistry.repositories.get to the caller",
        )
        return
    if not read_by_vms:
        out.add("gcp-network", name, "ok", f"repository {found.name} exists")
        return
    _check_reader(ctx, out, name, found)


def _members(policy: dict[str, Any]) -> set[str]:
    return {
        m
        for b in policy.get("bindings", [])
        if b.get("role") in _READ_ROLES
        for m in b.get("members", [])
    }


def _check_reader(ctx: GcpContext, out: Findings, name: str, image: ArtifactImage) -> None:
    from oxeo_flows.gcp_api import fetch

    target = ctx.dask_vms()
    account = target.service_account if target else None
    if account is None:
        out.add(
            "gcp-network",
            name,
            "skip",
            "the Dask VMs' service account is unknown",
            "set gcp.project-number",
        )
        return
    member = f"serviceAccount:{account}"
    repos = ctx.api("artifactregistry").projects().locations().repositories()
    status, policy = fetch(repos.getIamPolicy(resource=image.name))
    readers = _members(policy) if status == 200 else set()
    if member not in readers:
        projects = ctx.api("cloudresourcemanager").projects()
        p_status, p_policy = fetch(projects.getIamPolicy(resource=image.project, body={}))
        readers |= _members(p_policy) if p_status == 200 else set()
        status = status if status != 200 else p_status
    if member in readers:
        out.add("gcp-network", name, "ok", f"{account} may read {image.name}")
    elif status != 200:
        out.add(
            "gcp-network",
            name,
            "warn",
            f"cannot read the IAM policy of {image.name} (HTTP {status}) to check {account}",
            "grant artifactregistry.repositories.getIamPolicy to the caller",
        )
    else:
        out.add(
            "gcp-network",
            name,
            "fail",
            f"{account} (the Dask VMs' account) has no reader role on {image.name}: the image "
            "pull is refused and the VMs never start Dask",
            f"gcloud artifacts repositories add-iam-policy-binding {image.repository} "
            f"--location {image.location} --project {image.project} --member {member} "
            "--role roles/artifactregistry.reader",
        )
