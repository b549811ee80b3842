"""Preflight checks of a stack: ``oxeo-flows doctor``.

`run_doctor` checks, before anything costs money or hangs, that:

- the stack validates and the extras it needs are installed;
- the Prefect API answers, is not exposed over plain ``http://`` without credentials, and runs
  a compatible server version;
- Vertex AI settings are consistent (network by project *number*, reserved ranges only with a
  network, a service account, a maximum run time);
- Dask is private (TLS on, no public IPs) and has a start deadline; for GCP, when credentials
  (or a loopback endpoint in ``gcp.endpoints``) are available, the network and subnetwork
  exist, a firewall rule admits tcp 8786-8787 from the Vertex reserved ranges and the client
  subnet, and the private services peering is ACTIVE (Compute Engine and Service Networking
  REST APIs);
- the storage bucket exists and is writable (a tiny probe object is written, then removed);
- every secret in ``secrets.required`` resolves (values are never shown);
- Docker on EC2: the instance-metadata hop-limit trap is explained.

Each `Check` is ``ok``, ``warn``, ``fail`` or ``skip`` (with the reason), with a one-line fix.
"""

from __future__ import annotations

import ipaddress
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from oxeo_flows.errors import ConfigError, OxeoFlowsError

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack

__all__ = ["Check", "DoctorReport", "run_doctor"]

Status = Literal["ok", "warn", "fail", "skip"]
_DASK_PORTS = (8786, 8787)
_HTTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    """One check's outcome.

    Attributes:
        group: Area: ``stack``, ``extras``, ``prefect``, ``vertex``, ``dask``, ``gcp-network``,
            ``storage``, ``secrets`` or ``docker``.
        name: Short name of the check.
        status: ``ok``, ``warn``, ``fail`` or ``skip``.
        message: What was found (for ``skip``: why it was skipped).
        fix: One line saying what to do (None when ``ok``).
    """

    group: str
    name: str
    status: Status
    message: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "group": self.group,
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class DoctorReport:
    """All checks of one `run_doctor` call.

    Attributes:
        stack: The stack's name (None when it did not load).
        checks: The checks, in order.
    """

    stack: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skips allowed)."""
        return not any(c.status == "fail" for c in self.checks)

    def counts(self) -> dict[str, int]:
        """Number of checks per status."""
        return {
            s: sum(1 for c in self.checks if c.status == s) for s in ("ok", "warn", "fail", "skip")
        }

    def find(self, group: str, name: str | None = None) -> list[Check]:
        """Checks of ``group`` (and ``name``, when given)."""
        return [c for c in self.checks if c.group == group and (name is None or c.name == name)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "stack": self.stack,
            "ok": self.ok,
            "counts": self.counts(),
            "checks": [c.to_dict() for c in self.checks],
        }


class _Out:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(
        self, group: str, name: str, status: Status, message: str, fix: str | None = None
    ) -> None:
        self.checks.append(Check(group, name, status, message, fix if status != "ok" else None))


# ----------------------------------------------------------------------------- entry point


def run_doctor(stack: Stack | str | None = None) -> DoctorReport:
    """Run every check that applies to the stack.

    Args:
        stack: A `Stack`, a stack name, or None for the active stack.

    Returns:
        The report; ``report.ok`` is False when any check failed.

    Example:
        ```python
        from oxeo_flows.doctor import run_doctor

        report = run_doctor("prod")
        for check in report.checks:
            print(check.status, check.group, check.name, check.message, check.fix or "")
        ```
    """
    from oxeo_flows.stack import resolve_stack

    out = _Out()
    try:
        the_stack = resolve_stack(stack)
    except ConfigError as exc:
        out.add("stack", "validates", "fail", str(exc), "fix the key named above in the stack file")
        return DoctorReport(None, out.checks)
    where = f" ({the_stack.file})" if the_stack.file else " (built-in)"
    out.add("stack", "validates", "ok", f"stack {the_stack.name!r} is valid{where}")
    for step in (
        _check_extras,
        _check_prefect,
        _check_vertex,
        _check_dask,
        _check_gcp_network,
        _check_storage,
        _check_secrets,
        _check_docker_on_ec2,
    ):
        try:
            step(the_stack, out)
        except Exception as exc:  # a bug in one check must not hide the others
            out.add(
                step.__name__.removeprefix("_check_").replace("_", "-"),
                "internal",
                "fail",
                f"the check itself failed: {type(exc).__name__}: {exc}",
                "report this at the oxeo-flows issue tracker",
            )
    return DoctorReport(the_stack.name, out.checks)


# ----------------------------------------------------------------------------- helpers


def _uses_vertex(stack: Stack) -> bool:
    return stack.runner == "vertex" or any(p.type == "vertex-ai" for p in stack.pools.values())


def _uses_docker(stack: Stack) -> bool:
    return stack.runner == "docker" or any(p.type == "docker" for p in stack.pools.values())


def _is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------- extras


def _check_extras(stack: Stack, out: _Out) -> None:
    import importlib.util

    needs: list[tuple[str, str, str]] = []  # (module, extra, why)
    if _uses_vertex(stack):
        needs.append(("prefect_gcp", "gcp", "Vertex AI work pools"))
    if _uses_docker(stack):
        needs.append(("prefect_docker", "docker", "Docker work pools"))
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


# ----------------------------------------------------------------------------- prefect


def _prefect_headers() -> dict[str, str]:
    import base64

    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    key = PREFECT_API_KEY.value()
    auth = PREFECT_API_AUTH_STRING.value()
    if key:
        return {
            "Authorization": "Bearer "
            + (key.get_secret_value() if hasattr(key, "get_secret_value") else str(key))
        }
    if auth:
        raw = auth.get_secret_value() if hasattr(auth, "get_secret_value") else str(auth)
        return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}
    return {}


def _check_prefect(stack: Stack, out: _Out) -> None:
    import httpx
    import prefect
    from packaging.version import Version
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        out.add(
            "prefect",
            "api-url",
            "warn",
            "PREFECT_API_URL is not set: every command starts a temporary local server, so "
            "deployments and pools would not persist",
            "set PREFECT_API_URL (prefect config set PREFECT_API_URL=https://.../api)",
        )
        return
    url = str(url).rstrip("/")
    parts = urlsplit(url)
    headers = _prefect_headers()
    if parts.scheme == "http" and not _is_loopback_host(parts.hostname or "") and not headers:
        out.add(
            "prefect",
            "exposure",
            "warn",
            f"the API at {parts.scheme}://{parts.netloc} is plain http on a non-loopback "
            "address with no auth string: anyone who can reach it controls your flows",
            "serve it behind TLS and set PREFECT_SERVER_API_AUTH_STRING on the server and "
            "PREFECT_API_AUTH_STRING on clients (or bind it to 127.0.0.1)",
        )
    else:
        out.add(
            "prefect",
            "exposure",
            "ok",
            f"{parts.scheme}://{parts.netloc} ("
            + ("loopback" if _is_loopback_host(parts.hostname or "") else "authenticated or TLS")
            + ")",
        )
    try:
        with httpx.Client(timeout=_HTTP_TIMEOUT, headers=headers) as client:
            health = client.get(f"{url}/health")
            if health.status_code in (401, 403):
                out.add(
                    "prefect",
                    "answers",
                    "fail",
                    f"the API at {url} refused us (HTTP {health.status_code})",
                    "set PREFECT_API_KEY (Prefect Cloud) or PREFECT_API_AUTH_STRING (self-hosted)",
                )
                return
            health.raise_for_status()
            version_text = str(client.get(f"{url}/admin/version").json())
    except (httpx.HTTPError, ValueError) as exc:
        out.add(
            "prefect",
            "answers",
            "fail",
            f"the API at {url} does not answer: {type(exc).__name__}: {exc}",
            "start the server (prefect server start) or fix PREFECT_API_URL",
        )
        return
    out.add("prefect", "answers", "ok", f"{url} answers")
    client_version = Version(prefect.__version__)
    try:
        server_version = Version(version_text)
    except ValueError:
        out.add(
            "prefect",
            "version",
            "warn",
            f"the server reports an unreadable version {version_text!r}",
            "upgrade the server to Prefect 3",
        )
        return
    major = client_version.major
    if server_version.major != major:
        out.add(
            "prefect",
            "version",
            "fail",
            f"server {server_version} and client {client_version} have different major versions",
            f"run a Prefect {client_version.major}.x server "
            f"(pip install 'prefect>={major},<{major + 1}')",
        )
    elif server_version < Version(f"{client_version.major}.{client_version.minor}"):
        out.add(
            "prefect",
            "version",
            "warn",
            f"server {server_version} is older than client {client_version}",
            f"upgrade the server to {client_version} or newer",
        )
    else:
        out.add("prefect", "version", "ok", f"server {server_version}, client {client_version}")


# ----------------------------------------------------------------------------- vertex


def _check_vertex(stack: Stack, out: _Out) -> None:
    import re

    if not _uses_vertex(stack):
        return
    gcp = stack.gcp
    network = gcp.network
    private = stack.vertex.private_network
    if network:
        m = re.match(r"^projects/([^/]+)/global/networks/([^/]+)$", network)
        if m and not m.group(1).isdigit():
            out.add(
                "vertex",
                "network",
                "fail",
                f"{stack.describe('gcp', 'network')} is {network!r}: it names project "
                f"{m.group(1)!r} by id, but Vertex AI needs the project NUMBER",
                f'set gcp.network = {m.group(2)!r} and gcp.project-number = "<NUMBER>" '
                f"(gcloud projects describe {m.group(1)} --format='value(projectNumber)')",
            )
        else:
            try:
                spec = stack.gcp_network()
                path = spec.vertex_network if spec is not None else None
            except (ConfigError, ValueError) as exc:
                out.add(
                    "vertex",
                    "network",
                    "fail",
                    str(exc).splitlines()[0],
                    "set gcp.project-number "
                    "(gcloud projects describe PROJECT --format='value(projectNumber)')",
                )
            else:
                out.add("vertex", "network", "ok", f"jobs peer with {path}")
    elif private:
        out.add(
            "vertex",
            "network",
            "fail",
            "Vertex jobs are private by default but gcp.network is not set",
            "set gcp.network, gcp.project-number and gcp.reserved-ip-ranges, or "
            "vertex.private-network = false to opt out",
        )
    else:
        out.add(
            "vertex",
            "network",
            "warn",
            "vertex.private-network is false: jobs cannot reach private addresses "
            "(a private Dask scheduler)",
            "set gcp.network and remove vertex.private-network = false",
        )
    if gcp.reserved_ip_ranges and not network:
        out.add(
            "vertex",
            "reserved-ranges",
            "fail",
            f"gcp.reserved-ip-ranges {list(gcp.reserved_ip_ranges)} are set without gcp.network; "
            "Vertex rejects reserved ranges without a network",
            "set gcp.network, or remove gcp.reserved-ip-ranges",
        )
    elif network and not gcp.reserved_ip_ranges:
        out.add(
            "vertex",
            "reserved-ranges",
            "warn",
            "no gcp.reserved-ip-ranges: Vertex may use any range of the peering",
            "set gcp.reserved-ip-ranges to the range(s) your firewall admits",
        )
    elif gcp.reserved_ip_ranges:
        out.add("vertex", "reserved-ranges", "ok", f"ranges {', '.join(gcp.reserved_ip_ranges)}")
    account = stack.vertex.service_account or gcp.service_account
    if account:
        out.add("vertex", "service-account", "ok", account)
    else:
        out.add(
            "vertex",
            "service-account",
            "fail",
            "no service account: jobs would run as the default Compute Engine account "
            "(broad rights)",
            "set gcp.service-account (or vertex.service-account) to a dedicated account",
        )
    hours = stack.vertex.max_run_time_hours
    set_in = stack.origin("vertex", "max_run_time_hours")
    origin = (
        f"set in {set_in}"
        if set_in != "default"
        else "oxeo-flows default; Prefect alone would stop jobs after 1 h"
    )
    out.add(
        "vertex",
        "max-run-time",
        "ok",
        f"{hours} h ({origin})",
    )
    targets: list[tuple[str, str | None]] = []
    if stack.runner == "vertex":
        targets.append(("[vertex]", None))
    targets += [(f"pools.{n}", n) for n, p in stack.pools.items() if p.type == "vertex-ai"]
    for label, pool in targets:
        try:
            import warnings

            from oxeo_flows.pools.kind_vertex import vertex_job

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vertex_job(stack=stack, pool=pool)
        except OxeoFlowsError as exc:
            out.add(
                "vertex",
                f"job {label}",
                "fail",
                str(exc).splitlines()[0][:400],
                f"fix {label} in the stack (see the message)",
            )
        else:
            out.add("vertex", f"job {label}", "ok", "the job spec builds")


# ----------------------------------------------------------------------------- dask


def _check_dask(stack: Stack, out: _Out) -> None:
    from oxeo_flows.clusters._deadline import DEFAULT_START_TIMEOUT

    dask = stack.dask
    if dask.backend == "local":
        return
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


# ----------------------------------------------------------------------------- GCP network (REST)


class _Rest:
    """Tiny GET-only client of the Compute Engine and Service Networking REST APIs."""

    def __init__(self, compute: str, networking: str, token: str | None) -> None:
        self.compute = compute
        self.networking = networking
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, base: str, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        import httpx

        response = httpx.get(
            f"{base}{path}", params=params, headers=self.headers, timeout=_HTTP_TIMEOUT
        )
        try:
            body = response.json()
        except ValueError:
            body = {"raw": response.text[:200]}
        return response.status_code, body


def _base(endpoint: str | None, default_host: str) -> tuple[str, bool]:
    if not endpoint:
        return f"https://{default_host}", False
    text = endpoint.split("://", 1)[-1].rstrip("/")
    host = text.rsplit(":", 1)[0] if text.count(":") == 1 or text.startswith("[") else text
    loop = _is_loopback_host(host.split("]")[0])
    return (f"http://{text}" if loop else f"https://{text}"), loop


def _adc_available() -> str | None:
    """Why Application Default Credentials are unavailable (None when they may be found)."""
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return None
    config = os.environ.get("CLOUDSDK_CONFIG") or os.path.expanduser("~/.config/gcloud")
    if os.path.isfile(os.path.join(config, "application_default_credentials.json")):
        return None
    try:
        with open("/sys/class/dmi/id/product_name", encoding="utf-8") as fh:
            if "Google" in fh.read():
                return None
    except OSError:
        pass
    return (
        "no Google credentials found (GOOGLE_APPLICATION_CREDENTIALS unset, no gcloud "
        "application-default login, not on GCE)"
    )


def _rest_client(stack: Stack) -> tuple[_Rest | None, str]:
    endpoints = stack.gcp.endpoints
    compute, loop_c = _base(endpoints.compute, "compute.googleapis.com")
    networking, loop_n = _base(endpoints.service_networking, "servicenetworking.googleapis.com")
    if loop_c and loop_n:
        return _Rest(compute, networking, None), "loopback endpoints, anonymous"
    reason = _adc_available()
    if reason is not None:
        return None, reason
    try:
        import google.auth
        import google.auth.transport.requests

        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    except Exception as exc:
        return None, f"Google credentials unusable: {type(exc).__name__}: {exc}"
    return _Rest(compute, networking, str(credentials.token)), "application default credentials"


def _ports_cover(allowed: Iterable[dict[str, Any]]) -> bool:
    for rule in allowed:
        proto = str(rule.get("IPProtocol", "")).lower()
        if proto not in ("tcp", "all", "6"):
            continue
        ports = rule.get("ports")
        if not ports:
            return True
        covered: set[int] = set()
        for spec in ports:
            low, _, high = str(spec).partition("-")
            try:
                lo, hi = int(low), int(high or low)
            except ValueError:
                continue
            covered |= {p for p in _DASK_PORTS if lo <= p <= hi}
        if covered == set(_DASK_PORTS):
            return True
    return False


def _admits(rules: list[dict[str, Any]], cidr: str) -> str | None:
    """Name of an enabled ingress rule admitting tcp 8786-8787 from ``cidr``, or None."""
    target = ipaddress.ip_network(cidr, strict=False)
    for rule in rules:
        for source in rule.get("sourceRanges", []):
            try:
                net = ipaddress.ip_network(source, strict=False)
            except ValueError:
                continue
            if target.version == net.version and target.subnet_of(net):  # type: ignore[arg-type]
                return str(rule.get("name"))
    return None


def _check_gcp_network(stack: Stack, out: _Out) -> None:
    gcp = stack.gcp
    if not gcp.network or not (stack.dask.backend == "gcp" or _uses_vertex(stack)):
        return
    try:
        spec = stack.gcp_network()
    except (ConfigError, ValueError) as exc:
        out.add(
            "gcp-network",
            "network",
            "skip",
            f"the network settings are invalid ({str(exc).splitlines()[0]})",
            "fix the vertex/network checks above first",
        )
        return
    assert spec is not None
    rest, how = _rest_client(stack)
    if rest is None:
        out.add(
            "gcp-network",
            "network",
            "skip",
            f"cannot query the Compute API: {how}",
            "gcloud auth application-default login (or run where ADC exist) and run doctor again",
        )
        return
    project = spec.network_project
    net_path = f"/compute/v1/projects/{project}/global/networks/{spec.network}"
    try:
        status, network = rest.get(rest.compute, net_path)
    except Exception as exc:
        out.add(
            "gcp-network",
            "network",
            "fail",
            f"the Compute API at {rest.compute} does not answer: {exc}",
            "check gcp.endpoints.compute and your connectivity",
        )
        return
    if status == 404:
        out.add(
            "gcp-network",
            "network",
            "fail",
            f"network {spec.network!r} does not exist in project {project!r}",
            f"gcloud compute networks create {spec.network} --project {project} "
            "--subnet-mode custom",
        )
        return
    if status != 200:
        out.add(
            "gcp-network",
            "network",
            "fail",
            f"reading network {spec.network!r}: HTTP {status} {network}",
            "grant compute.networks.get (roles/compute.networkViewer) to the caller",
        )
        return
    out.add(
        "gcp-network",
        "network",
        "ok",
        f"projects/{project}/global/networks/{spec.network} exists ({how})",
    )

    sources: dict[str, str] = {}  # cidr -> label
    if spec.subnetwork and spec.region:
        status, sub = rest.get(
            rest.compute,
            f"/compute/v1/projects/{project}/regions/{spec.region}/subnetworks/{spec.subnetwork}",
        )
        if status == 200:
            out.add(
                "gcp-network",
                "subnetwork",
                "ok",
                f"{spec.subnetwork} ({sub.get('ipCidrRange')}) in {spec.region}",
            )
            if sub.get("ipCidrRange"):
                sources[str(sub["ipCidrRange"])] = f"subnetwork {spec.subnetwork}"
        else:
            out.add(
                "gcp-network",
                "subnetwork",
                "fail",
                f"subnetwork {spec.subnetwork!r} not found in {spec.region} (HTTP {status})",
                f"gcloud compute networks subnets create {spec.subnetwork} "
                f"--network {spec.network} "
                f"--region {spec.region} --range <CIDR> --enable-private-ip-google-access",
            )
    elif stack.dask.backend == "gcp":
        out.add(
            "gcp-network",
            "subnetwork",
            "fail",
            "gcp.subnetwork is not set; Dask VMs need one",
            "set gcp.subnetwork (and gcp.region)",
        )
    for name in spec.reserved_ip_ranges:
        status, addr = rest.get(
            rest.compute, f"/compute/v1/projects/{project}/global/addresses/{name}"
        )
        if status == 200 and addr.get("address"):
            cidr = f"{addr['address']}/{addr.get('prefixLength', 32)}"
            sources[cidr] = f"reserved range {name}"
            out.add("gcp-network", f"range {name}", "ok", f"{cidr} ({addr.get('purpose', '?')})")
        else:
            out.add(
                "gcp-network",
                f"range {name}",
                "fail",
                f"reserved range {name!r} not found (HTTP {status})",
                f"gcloud compute addresses create {name} --global --purpose VPC_PEERING "
                f"--prefix-length 16 --network {spec.network}",
            )

    status, fw = rest.get(rest.compute, f"/compute/v1/projects/{project}/global/firewalls")
    if status != 200:
        out.add(
            "gcp-network",
            "firewall",
            "fail",
            f"cannot list firewall rules (HTTP {status})",
            "grant compute.firewalls.list to the caller",
        )
    else:
        rules = [
            r
            for r in fw.get("items", [])
            if str(r.get("network", "")).endswith(f"/networks/{spec.network}")
            and r.get("direction", "INGRESS") == "INGRESS"
            and not r.get("disabled", False)
            and _ports_cover(r.get("allowed", []))
        ]
        world = [
            str(r.get("name"))
            for r in rules
            if any(s in ("0.0.0.0/0", "::/0") for s in r.get("sourceRanges", []))
        ]
        if world:
            out.add(
                "gcp-network",
                "firewall-open",
                "fail",
                f"firewall rule(s) {', '.join(world)} admit tcp 8786-8787 from the whole internet",
                f"gcloud compute firewall-rules delete {world[0]} (admit only the ranges below)",
            )
        if not sources:
            out.add(
                "gcp-network",
                "firewall",
                "skip",
                "no subnetwork or reserved range to check sources against",
                "set gcp.subnetwork / gcp.reserved-ip-ranges",
            )
        for cidr, label in sources.items():
            rule = _admits([r for r in rules if str(r.get("name")) not in world], cidr)
            if rule:
                out.add(
                    "gcp-network",
                    f"firewall {label}",
                    "ok",
                    f"rule {rule!r} admits tcp 8786-8787 from {cidr}",
                )
            else:
                out.add(
                    "gcp-network",
                    f"firewall {label}",
                    "fail",
                    f"no enabled ingress rule on {spec.network!r} admits tcp 8786-8787 "
                    f"from {cidr} ({label})",
                    f"gcloud compute firewall-rules create dask-from-{label.split()[-1]} "
                    f"--network {spec.network} "
                    f"--allow tcp:8786-8787 --source-ranges {cidr}",
                )

    number = spec.host_project_number if spec.host_project else spec.project_number
    if not number:
        out.add(
            "gcp-network",
            "peering",
            "skip",
            "no project number, so the peering cannot be looked up",
            "set gcp.project-number",
        )
        return
    status, conns = rest.get(
        rest.networking,
        "/v1/services/servicenetworking.googleapis.com/connections",
        {"network": f"projects/{number}/global/networks/{spec.network}"},
    )
    connections = conns.get("connections", []) if status == 200 else []
    if not connections:
        out.add(
            "gcp-network",
            "peering",
            "fail",
            f"no private services connection on {spec.network!r} (HTTP {status})",
            f"gcloud services vpc-peerings connect --service servicenetworking.googleapis.com "
            f"--network {spec.network} --ranges {','.join(spec.reserved_ip_ranges) or '<RANGE>'}",
        )
        return
    conn = connections[0]
    missing = [r for r in spec.reserved_ip_ranges if r not in conn.get("reservedPeeringRanges", [])]
    peering_name = conn.get("peering", "servicenetworking-googleapis-com")
    peer_cmd = (
        "gcloud services vpc-peerings update --service servicenetworking.googleapis.com "
        f"--network {spec.network} --ranges {','.join(spec.reserved_ip_ranges) or '<RANGE>'}"
    )
    state = next(
        (p.get("state") for p in network.get("peerings", []) if p.get("name") == peering_name), None
    )
    if state != "ACTIVE":
        out.add(
            "gcp-network",
            "peering",
            "fail",
            f"peering {peering_name!r} is {state or 'missing'}, not ACTIVE",
            f"{peer_cmd} --force",
        )
    elif missing:
        out.add(
            "gcp-network",
            "peering",
            "fail",
            f"peering {peering_name!r} is ACTIVE but does not include range(s) "
            f"{', '.join(missing)}",
            peer_cmd,
        )
    else:
        out.add("gcp-network", "peering", "ok", f"{peering_name} is ACTIVE")


# ----------------------------------------------------------------------------- storage


def _check_storage(stack: Stack, out: _Out) -> None:
    bucket = stack.storage.bucket
    if not bucket:
        return
    try:
        from oxeo_flows.aws import aws_credentials

        client = aws_credentials(stack=stack).get_client("s3")
    except OxeoFlowsError as exc:
        out.add(
            "storage", "bucket", "fail", str(exc), "pip install 'oxeo-flows[aws]' and check [aws]"
        )
        return
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "?"))
        if code in ("404", "NoSuchBucket", "NotFound"):
            out.add(
                "storage",
                "bucket",
                "fail",
                f"bucket {bucket!r} does not exist",
                f"aws s3 mb s3://{bucket} (or fix {stack.describe('storage', 'bucket')})",
            )
        else:
            out.add(
                "storage",
                "bucket",
                "fail",
                f"bucket {bucket!r}: {code}",
                "grant s3:ListBucket on the bucket to these credentials",
            )
        return
    except BotoCoreError as exc:
        out.add(
            "storage",
            "bucket",
            "fail",
            f"S3 does not answer: {exc}",
            "check aws.region / aws.endpoint-url and credentials",
        )
        return
    out.add("storage", "bucket", "ok", f"s3://{bucket} exists")
    folder = (stack.storage.folder or "").strip("/")
    key = f"{folder + '/' if folder else ''}.oxeo-flows-doctor-{uuid.uuid4().hex}"
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"oxeo-flows doctor probe\n")
        client.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        out.add(
            "storage",
            "writable",
            "fail",
            f"cannot write s3://{bucket}/{key}: {exc}",
            "grant s3:PutObject and s3:DeleteObject on the bucket (prefix) to these credentials",
        )
        return
    out.add(
        "storage",
        "writable",
        "ok",
        f"wrote and removed a probe object under s3://{bucket}/{folder}",
    )


# ----------------------------------------------------------------------------- secrets


def _check_secrets(stack: Stack, out: _Out) -> None:
    from oxeo_flows.secrets import resolve_secret

    for name in stack.secrets.required:
        try:
            loaded = resolve_secret(name, stack=stack)
        except OxeoFlowsError as exc:
            out.add(
                "secrets",
                name,
                "fail",
                " ".join(str(exc).split())[:600],
                f"create the secret {name!r} in one of: {', '.join(stack.secrets.sources)}",
            )
        else:
            out.add("secrets", name, "ok", f"resolves from {loaded.source} ({loaded.where})")


# ----------------------------------------------------------------------------- docker on EC2


def _check_docker_on_ec2(stack: Stack, out: _Out) -> None:
    if not (_uses_docker(stack) and stack.aws.region):
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
