"""`run_doctor` against the real Prefect server, moto's S3, env secrets and a GCP REST fake."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from oxeo_flows.doctor import run_doctor
from tests.doctor._stacks import BUCKET, clean_stack, one
from tests.fakes.gcp_rest import FakeGcpRest, GcpState


def test_clean_stack_is_all_ok(env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]) -> None:
    import boto3

    stack_file(clean_stack(gcp.endpoint, env))
    report = run_doctor()
    bad = [c for c in report.checks if c.status != "ok"]
    assert bad == [], bad
    assert report.ok
    groups = {c.group for c in report.checks}
    assert {
        "stack",
        "extras",
        "prefect",
        "vertex",
        "dask",
        "gcp-network",
        "storage",
        "secrets",
    } <= groups
    assert one(report, "gcp-network", "peering").message.endswith("is ACTIVE")
    assert any("/global/firewalls" in p for p in gcp.requests)
    assert any("servicenetworking" in p for p in gcp.requests)
    # the probe object was removed again
    listing = boto3.client("s3", endpoint_url=env, region_name="eu-west-1").list_objects_v2(
        Bucket=BUCKET
    )
    assert listing.get("KeyCount", 0) == 0
    # the secret's value never appears
    assert "not-a-real-key-value-1234" not in repr(report.to_dict())


MISCONFIGURED: list[tuple[str, dict[str, str], tuple[str, str], str, str]] = [
    (
        "network by project id",
        {"network": 'network = "projects/oxeo-main/global/networks/dask"'},
        ("stack", "validates"),  # the stack shares the spec's checks: refused at load
        "fail",
        "project NUMBER",
    ),
    (
        "reserved ranges without network",
        {"network": ""},
        ("stack", "validates"),
        "fail",
        "without a network",
    ),
    (
        "no service account",
        {"service-account": ""},
        ("vertex", "service-account"),
        "fail",
        "default Compute Engine",
    ),
    ("tls off", {"tls": "tls.enabled = false"}, ("dask", "tls"), "fail", "tls.enabled is false"),
    ("public ip", {"public-ip": "public-ip = true"}, ("dask", "public-ip"), "fail", "public IPs"),
    ("no deadline", {"start-timeout": ""}, ("dask", "deadline"), "warn", "600 s"),
    (
        "missing bucket",
        {"bucket": 'bucket = "oxeo-no-such-bucket"'},
        ("storage", "bucket"),
        "fail",
        "does not exist",
    ),
    (
        "missing secret",
        {"required": 'required = ["sat-extractor-sa", "github-token"]'},
        ("secrets", "github-token"),
        "fail",
        "github-token",
    ),
]


@pytest.mark.parametrize(
    ("edits", "key", "status", "text"),
    [pytest.param(*case[1:], id=case[0]) for case in MISCONFIGURED],
)
def test_each_misconfiguration_gives_its_line(
    env: str,
    gcp: FakeGcpRest,
    stack_file: Callable[..., Any],
    edits: dict[str, str],
    key: tuple[str, str],
    status: str,
    text: str,
) -> None:
    stack_file(clean_stack(gcp.endpoint, env, **edits))
    report = run_doctor()
    check = one(report, *key)
    assert check.status == status, check
    assert text in check.message
    assert check.fix
    assert report.ok is (status != "fail")


def _break(state: GcpState, what: str) -> None:
    if what == "no firewall for the reserved range":
        state.firewalls.clear()
        state.firewall("dask-subnet-only", "dask", ["10.10.0.0/20"])
    elif what == "firewall open to the world":
        state.firewalls.clear()
        state.firewall("dask-world", "dask", ["0.0.0.0/0"])
    elif what == "peering not active":
        state.peer("dask", ["vertex-peering"], state="INACTIVE")
    elif what == "no subnetwork":
        state.subnetworks.clear()
    elif what == "no network":
        state.networks.clear()
    elif what == "no peering":
        state.connections.clear()


GCP_BROKEN = [
    (
        "no firewall for the reserved range",
        ("gcp-network", "firewall reserved range vertex-peering"),
        "10.20.0.0/16",
    ),
    ("firewall open to the world", ("gcp-network", "firewall-open"), "whole internet"),
    ("peering not active", ("gcp-network", "peering"), "INACTIVE"),
    ("no subnetwork", ("gcp-network", "subnetwork"), "not found"),
    ("no network", ("gcp-network", "network"), "does not exist"),
    ("no peering", ("gcp-network", "peering"), "no private services connection"),
]


@pytest.mark.parametrize(("what", "key", "text"), GCP_BROKEN, ids=[g[0] for g in GCP_BROKEN])
def test_gcp_network_problems(
    env: str,
    gcp: FakeGcpRest,
    stack_file: Callable[..., Any],
    what: str,
    key: tuple[str, str],
    text: str,
) -> None:
    _break(gcp.state, what)
    stack_file(clean_stack(gcp.endpoint, env))
    report = run_doctor()
    check = one(report, *key)
    assert check.status == "fail", check
    assert text in check.message
    assert check.fix
    assert not report.ok


def test_gcp_checks_skip_without_credentials(env: str, stack_file: Callable[..., Any]) -> None:
    try:
        with open("/sys/class/dmi/id/product_name", encoding="utf-8") as fh:
            on_gce = "Google" in fh.read()
    except OSError:
        on_gce = False
    if on_gce:
        pytest.skip("on GCE the metadata server would provide credentials")
    stack_file(clean_stack("", env, endpoints=""))
    report = run_doctor()
    check = one(report, "gcp-network", "network")
    assert check.status == "skip"
    assert "no Google credentials" in check.message


def test_prefect_unreachable_fails(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests._util import free_port

    stack_file(clean_stack(gcp.endpoint, env))
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        report = run_doctor()
    check = one(report, "prefect", "answers")
    assert check.status == "fail"
    assert "does not answer" in check.message
    assert not report.ok


def test_exposed_http_api_without_auth_warns(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # The seed's setup: a server bound to 0.0.0.0 and used over plain http without auth.
    # (0.0.0.0 is answered by this machine: no traffic leaves it.)
    api = str(PREFECT_API_URL.value())
    exposed = re.sub(r"//127\.0\.0\.1:", "//0.0.0.0:", api)
    stack_file(clean_stack(gcp.endpoint, env))
    with temporary_settings({PREFECT_API_URL: exposed}):
        report = run_doctor()
    check = one(report, "prefect", "exposure")
    assert check.status == "warn"
    assert "no auth string" in check.message
    assert "PREFECT_API_AUTH_STRING" in (check.fix or "")
    assert one(report, "prefect", "answers").status == "ok"
    assert one(report, "prefect", "version").status == "ok"


def test_docker_on_ec2_explains_the_hop_limit(
    env: str, stack_file: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_file(
        f"""
[tool.oxeo-flows.stacks.aws]
runner = "docker"

[tool.oxeo-flows.stacks.aws.aws]
region = "eu-west-1"
endpoint-url = "{env}"

[tool.oxeo-flows.stacks.aws.docker]
image = "prefecthq/prefect:3-python3.11"
"""
    )
    report = run_doctor("aws")
    check = one(report, "docker", "ec2-metadata-hop-limit")
    assert check.status == "warn"
    assert "hop limit" in check.message
    assert "--http-put-response-hop-limit 2" in (check.fix or "")


def test_invalid_stack_fails_first(stack_file: Callable[..., Any]) -> None:
    stack_file('[tool.oxeo-flows.stacks.prod]\nrunner = "kubernetes"\n')
    report = run_doctor("prod")
    assert [c.status for c in report.checks] == ["fail"]
    assert report.checks[0].group == "stack"
    assert "runner" in report.checks[0].message
    assert report.stack is None
