"""Doctor's GCP verdicts are GCP's: firewall priority, deny, targets, disabled rules; NAT and
Private Google Access for private VMs; Artifact Registry repositories and their readers; and the
Prefect API exposure cases. All on the loopback REST fake (`tests.fakes.gcp_rest`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from oxeo_flows.doctor import DoctorReport, run_doctor
from tests.doctor._stacks import clean_stack, one
from tests.fakes.gcp_rest import VM_ACCOUNT, FakeGcpRest, GcpState

PEERING = ("gcp-network", "firewall reserved range vertex-peering")
SUBNET = ("gcp-network", "firewall subnetwork dask-europe-west4")
INTRA = ("gcp-network", "intra-cluster")
EGRESS = ("gcp-network", "egress")
DASK_IMAGE = ("gcp-network", "registry dask.gcp.docker-image")
VERTEX_IMAGE = ("gcp-network", "registry vertex.image")
BOTH = ["10.10.0.0/20", "10.20.0.0/16"]


def doctor(
    gcp: FakeGcpRest, moto: str, stack_file: Callable[..., Any], **edits: str
) -> DoctorReport:
    stack_file(clean_stack(gcp.endpoint, moto, **edits))
    return run_doctor()


def replace_dask_rule(state: GcpState, **kw: Any) -> None:
    state.firewalls = [r for r in state.firewalls if r["name"] != "dask-internal"]
    state.firewall("dask-internal", "dask", BOTH, **kw)


# ----------------------------------------------------------------------------- firewall


def test_allow_rule_for_other_target_tags_does_not_count(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    replace_dask_rule(gcp.state, target_tags=["dask-scheduler"])
    report = doctor(gcp, env, stack_file)
    check = one(report, *PEERING)
    assert check.status == "fail", check
    assert (
        "'dask-internal' targets dask-scheduler, which the Dask VMs do not carry" in check.message
    )
    assert "--target-tags http-server" in (check.fix or "")
    assert not report.ok


def test_allow_rule_for_the_vms_tag_counts(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    replace_dask_rule(gcp.state, target_tags=["http-server"])
    assert one(doctor(gcp, env, stack_file), *PEERING).status == "ok"


def test_higher_priority_deny_from_the_peering_range_wins(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    gcp.state.firewall("deny-peering", "dask", ["10.20.0.0/16"], ports=[], deny=True, priority=900)
    report = doctor(gcp, env, stack_file)
    check = one(report, *PEERING)
    assert check.status == "fail", check
    assert "deny rule 'deny-peering' (priority 900) refuses tcp 8786-8787" in check.message
    assert "--priority 899" in (check.fix or "")  # an allow at the default 1000 would still lose
    assert one(report, *SUBNET).status == "ok"  # the deny is for the peering range only


def test_lower_priority_deny_loses_and_a_tie_goes_to_deny(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    gcp.state.firewall("deny-late", "dask", ["10.20.0.0/16"], ports=[], deny=True, priority=2000)
    assert one(doctor(gcp, env, stack_file), *PEERING).status == "ok"
    gcp.state.firewall("deny-tie", "dask", ["10.20.0.0/16"], ports=["8787"], deny=True)
    check = one(doctor(gcp, env, stack_file), *PEERING)
    assert check.status == "fail"
    assert "'deny-tie' (priority 1000) refuses tcp 8787" in check.message


def test_target_service_accounts_are_those_of_the_vms(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    replace_dask_rule(
        gcp.state, target_service_accounts=["other@oxeo-main.iam.gserviceaccount.com"]
    )
    check = one(doctor(gcp, env, stack_file), *PEERING)
    assert check.status == "fail"
    assert "other@oxeo-main.iam.gserviceaccount.com" in check.message
    replace_dask_rule(gcp.state, target_service_accounts=[VM_ACCOUNT])
    assert one(doctor(gcp, env, stack_file), *PEERING).status == "ok"


def test_disabled_rule_is_named(env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]) -> None:
    replace_dask_rule(gcp.state, disabled=True)
    check = one(doctor(gcp, env, stack_file), *PEERING)
    assert check.status == "fail"
    assert "implied deny-all ingress rule" in check.message
    assert "'dask-internal' is disabled" in check.message


def test_all_tcp_between_the_dask_vms(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    gcp.state.firewalls = [r for r in gcp.state.firewalls if r["name"] != "dask-intra-cluster"]
    report = doctor(gcp, env, stack_file)
    check = one(report, *INTRA)
    assert check.status == "fail", check
    assert "refuses tcp 1024-8785" in check.message  # 8786-8787 alone is not enough
    assert "--source-tags http-server" in (check.fix or "")
    # A rule by source tag (no source range) is how GCP admits traffic from tagged VMs.
    gcp.state.firewall("by-tag", "dask", [], ports=[], source_tags=["http-server"])
    assert one(doctor(gcp, env, stack_file), *INTRA).status == "ok"


def test_egress_deny_between_the_vms_fails(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    gcp.state.firewall(
        "no-egress", "dask", ["10.0.0.0/8"], ports=[], deny=True, direction="EGRESS", priority=100
    )
    check = one(doctor(gcp, env, stack_file), "gcp-network", "intra-cluster-egress")
    assert check.status == "fail"
    assert "'no-egress'" in check.message


# ----------------------------------------------------------------------------- egress


def test_docker_hub_image_without_nat_would_hang(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    gcp.state.routers.clear()
    report = doctor(gcp, env, stack_file, **{"docker-image": ""})
    check = one(report, *EGRESS)
    assert check.status == "fail", check
    assert "no Cloud NAT" in check.message
    assert "daskdev/dask:latest" in check.message
    assert "routers nats create" in (check.fix or "")
    assert one(report, *DASK_IMAGE).status == "ok"  # not an Artifact Registry image


def test_nat_for_another_subnetwork_does_not_count(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    gcp.state.routers.clear()
    gcp.state.nat("europe-west4", "dask", subnets=["other-subnet"])
    assert one(doctor(gcp, env, stack_file), *EGRESS).status == "fail"
    gcp.state.nat("europe-west4", "dask", subnets=["dask-europe-west4"])
    assert one(doctor(gcp, env, stack_file), *EGRESS).status == "ok"


def test_private_google_access_is_enough_for_a_prebuilt_vm(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    gcp.state.routers.clear()
    prebuilt = {
        "dask-gcp": 'bootstrap = false\nsource-image = "projects/oxeo-main/global/images/dask"'
    }
    check = one(doctor(gcp, env, stack_file, **prebuilt), *EGRESS)
    assert check.status == "ok", check
    assert "Private Google Access" in check.message
    gcp.state.private_google_access.clear()
    check = one(doctor(gcp, env, stack_file, **prebuilt), *EGRESS)
    assert check.status == "fail"
    assert "neither Private Google Access nor Cloud NAT" in check.message
    assert "--enable-private-ip-google-access" in (check.fix or "")


# ----------------------------------------------------------------------------- registry


def test_missing_repository_fails(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    gcp.state.repositories.clear()
    report = doctor(gcp, env, stack_file)
    check = one(report, *DASK_IMAGE)
    assert check.status == "fail"
    assert "repositories/dask does not exist" in check.message
    assert "gcloud artifacts repositories create dask" in (check.fix or "")
    assert one(report, *VERTEX_IMAGE).status == "fail"


def test_vm_account_must_be_able_to_read_the_repository(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    name = gcp.state.repository("europe-west4", "dask", readers=None)
    check = one(doctor(gcp, env, stack_file), *DASK_IMAGE)
    assert check.status == "fail", check
    assert f"{VM_ACCOUNT} (the Dask VMs' account) has no reader role on {name}" in check.message
    assert "--role roles/artifactregistry.reader" in (check.fix or "")
    # A reader role on the project is as good (Resource Manager's projects.getIamPolicy).
    gcp.state.project_policy = {
        "bindings": [
            {"role": "roles/artifactregistry.reader", "members": [f"serviceAccount:{VM_ACCOUNT}"]}
        ]
    }
    assert one(doctor(gcp, env, stack_file), *DASK_IMAGE).status == "ok"
    assert any(r.startswith("POST ") and "getIamPolicy" in r for r in gcp.requests)


# ----------------------------------------------------------------------------- Prefect


@pytest.mark.parametrize(
    ("setting", "value", "kind"),
    [
        ("PREFECT_API_AUTH_STRING", "admin:hunter2-canary", "auth string"),
        ("PREFECT_API_KEY", "pnu_canary_key_123", "API key"),
    ],
)
def test_credential_over_plain_http_warns(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any], setting: str, value: str, kind: str
) -> None:
    import prefect.settings as ps

    api = str(ps.PREFECT_API_URL.value()).replace("//127.0.0.1:", "//0.0.0.0:")
    stack_file(clean_stack(gcp.endpoint, env))
    with ps.temporary_settings({ps.PREFECT_API_URL: api, getattr(ps, setting): value}):
        report = run_doctor()
    check = one(report, "prefect", "exposure")
    assert check.status == "warn", check
    assert f"the {kind} travels in clear text" in check.message
    assert value not in repr(report.to_dict())


def test_https_without_certificate_check_warns(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    import prefect.settings as ps

    api = str(ps.PREFECT_API_URL.value()).replace("http://", "https://")
    stack_file(clean_stack(gcp.endpoint, env))
    updates = {ps.PREFECT_API_URL: api, ps.PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}
    with ps.temporary_settings(updates):
        report = run_doctor()
    check = one(report, "prefect", "exposure")
    assert check.status == "warn", check
    assert "PREFECT_API_TLS_INSECURE_SKIP_VERIFY is true" in check.message
