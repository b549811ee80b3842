"""The ``ec2`` backend against moto's EC2 (HTTP server on 127.0.0.1).

moto hands out fake private IPs; no test dials them: the scheduler check is a probe that
records the address and answers "not yet", so the start deadline expires without a dial.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from oxeo_flows import ClusterStartTimeout, dask_runner, load_stack


@pytest.fixture
def vpc(moto: str) -> dict[str, str]:
    """A VPC, subnet, security group and AMI in moto."""
    import boto3

    ec2 = boto3.client("ec2", region_name="eu-west-1", endpoint_url=moto)
    vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="dask", Description="dask", VpcId=vpc_id)["GroupId"]
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    return {"vpc": vpc_id, "subnet": subnet, "group": group, "ami": ami, "endpoint": moto}


def _live(endpoint: str) -> list[dict[str, Any]]:
    import boto3

    ec2 = boto3.client("ec2", region_name="eu-west-1", endpoint_url=endpoint)
    found = ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return [i for r in found["Reservations"] for i in r["Instances"]]


def _runner(vpc: dict[str, str], **overrides: Any) -> Any:
    stack = load_stack(
        overrides={
            "aws": {
                "region": "eu-west-1",
                "vpc": vpc["vpc"],
                "subnets": [vpc["subnet"]],
                "security-groups": [vpc["group"]],
                "endpoint-url": vpc["endpoint"],
            }
        }
    )
    ec2 = {
        "ami": vpc["ami"],
        "docker_image": "ghcr.io/oxeo/flows:1",
        "spot": True,
        "tags": {"team": "eo"},
    }
    ec2.update(overrides.pop("ec2", {}))
    return dask_runner("ec2", stack=stack, ec2=ec2, **overrides)


def test_forced_start_timeout_leaves_no_instance(vpc: dict[str, str]) -> None:
    from aiobotocore.session import get_session

    session = get_session()
    calls: list[dict[str, Any]] = []
    session.register(
        "provide-client-params.ec2.RunInstances", lambda params, **_: calls.append(dict(params))
    )
    tagged: list[dict[str, Any]] = []
    session.register(
        "provide-client-params.ec2.CreateTags", lambda params, **_: tagged.append(dict(params))
    )
    dialed: list[tuple[str, int]] = []

    async def never(host: str, port: int) -> bool:
        dialed.append((host, port))
        return False

    runner = _runner(vpc, start_timeout=5)
    kwargs = {
        **runner.cluster_kwargs,
        "start_timeout": 5,
        "boto_session": session,
        "probe": never,
    }
    kwargs["flow_run_id"] = "flow-run-1"
    started = time.monotonic()
    with pytest.raises(ClusterStartTimeout) as info:
        runner.cluster_class(**kwargs)
    assert time.monotonic() - started < 30
    # RunInstances: the scheduler, then (parallel boot: before it answered) the worker.
    assert [c["InstanceType"] for c in calls] == ["t3.medium", "t3.large"]
    params = calls[0]
    (nic,) = params["NetworkInterfaces"]
    assert nic["AssociatePublicIpAddress"] is False
    assert nic["SubnetId"] == vpc["subnet"]
    assert nic["Groups"] == [vpc["group"]]
    tags = {t["Key"]: t["Value"] for t in params["TagSpecifications"][0]["Tags"]}
    assert tags["oxeo-flows:cluster"].startswith("oxeo-")
    assert tags["oxeo-flows:flow-run"] == "flow-run-1"
    assert tags["team"] == "eo"
    # Each instance is tagged with its own name at launch: no CreateTags call after it.
    names = [
        {t["Key"]: t["Value"] for t in c["TagSpecifications"][0]["Tags"]}["Name"] for c in calls
    ]
    assert names[0].endswith("-scheduler")
    assert "-worker-" in names[1]
    assert tags["Dask Cluster"]
    assert tagged == []
    assert params["ImageId"] == vpc["ami"]
    # The message names the address dialed (the private IP), the network, the checklist.
    message = str(info.value)
    host, port = dialed[0]
    assert port == 8786
    assert f"tls://{host}:8786" in message
    assert "internal (private) address" in message
    assert vpc["subnet"] in message
    assert vpc["group"] in message
    assert "aws ec2 get-console-output --instance-id i-" in message
    assert "tcp:8786-8787" in message
    # Nothing is left running: the worker created while the scheduler booted is gone too.
    assert _live(vpc["endpoint"]) == []


def test_spot_workers_and_profile_are_requested(vpc: dict[str, str]) -> None:
    runner = _runner(vpc, ec2={"iam_instance_profile": "dask-vm"})
    assert runner.cluster_kwargs["spot"] is True
    assert runner.cluster_kwargs["iam_instance_profile"] == "dask-vm"
    assert runner.cluster_kwargs["public_ip"] is False
    assert runner.cluster_kwargs["endpoint_url"] == vpc["endpoint"]


def test_cli_cleanup_terminates_leftovers_by_tag(vpc: dict[str, str], stack_file: Any) -> None:
    import boto3

    from oxeo_flows.cli import app

    ec2 = boto3.client("ec2", region_name="eu-west-1", endpoint_url=vpc["endpoint"])

    def launch(tags: dict[str, str]) -> str:
        spec = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
        inst = ec2.run_instances(
            ImageId=vpc["ami"],
            MinCount=1,
            MaxCount=1,
            SubnetId=vpc["subnet"],
            TagSpecifications=spec,
        )
        return str(inst["Instances"][0]["InstanceId"])

    ours = launch(
        {
            "oxeo-flows:cluster": "oxeo-dead0001",
            "oxeo-flows:flow-run": "fr-1",
            "oxeo-flows:stack": "local",
        }
    )
    other = launch({"Name": "database"})
    stack_file(
        f"""
[tool.oxeo-flows.stacks.local.aws]
region = "eu-west-1"
endpoint-url = "{vpc["endpoint"]}"
"""
    )
    cli = CliRunner()
    listed = cli.invoke(app, ["clusters", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["id"], r["cluster"], r["flow_run"]) for r in rows] == [
        (ours, "oxeo-dead0001", "fr-1")
    ]
    dry = cli.invoke(app, ["clusters", "cleanup", "--dry-run"])
    assert dry.exit_code == 0
    assert "nothing deleted" in dry.output
    assert {i["InstanceId"] for i in _live(vpc["endpoint"])} == {ours, other}
    young = cli.invoke(app, ["clusters", "cleanup", "--older-than", "2h", "--yes"])
    assert young.exit_code == 0
    assert "nothing to delete" in young.output
    done = cli.invoke(app, ["clusters", "cleanup", "--yes"])
    assert done.exit_code == 0, done.output
    assert ours in done.output
    assert {i["InstanceId"] for i in _live(vpc["endpoint"])} == {other}


def test_cli_reports_config_errors_without_traceback() -> None:
    from oxeo_flows.cli import app

    result = CliRunner().invoke(app, ["clusters", "cleanup", "--older-than", "soon"])
    assert result.exit_code == 1
    assert "not a duration" in result.output
    assert "Traceback" not in result.output


def _never_started(vpc: dict[str, str], **extra: Any) -> tuple[list[dict[str, Any]], Any]:
    """Start a cluster whose scheduler never answers; the RunInstances params and the error."""
    from aiobotocore.session import get_session

    session = get_session()
    calls: list[dict[str, Any]] = []
    session.register(
        "before-parameter-build.ec2.RunInstances",
        lambda params, **_: calls.append(dict(params)),
    )

    async def never(host: str, port: int) -> bool:
        return False

    runner = _runner(vpc, start_timeout=3)
    kwargs = {
        **runner.cluster_kwargs,
        "start_timeout": 3,
        "boto_session": session,
        "probe": never,
        **extra,
    }
    with pytest.raises(Exception) as info:
        runner.cluster_class(**kwargs)
    return calls, info.value


def test_instances_require_imdsv2_with_hop_limit_2(vpc: dict[str, str]) -> None:
    import boto3

    calls, error = _never_started(vpc)
    assert isinstance(error, ClusterStartTimeout)
    assert len(calls) == 2  # scheduler and worker
    for params in calls:
        assert params["MetadataOptions"]["HttpTokens"] == "required"
        assert params["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    ec2 = boto3.client("ec2", region_name="eu-west-1", endpoint_url=vpc["endpoint"])
    found = ec2.describe_instances()["Reservations"]
    options = [i["MetadataOptions"] for r in found for i in r["Instances"]]
    assert len(options) == 2
    for option in options:
        assert option["HttpTokens"] == "required"
        assert option["HttpPutResponseHopLimit"] == 2


def test_user_data_is_gzip_compressed_and_well_under_the_limit(vpc: dict[str, str]) -> None:
    import gzip

    from oxeo_flows.clusters.ec2 import USER_DATA_LIMIT
    from oxeo_flows.testing._boot import parse_user_data

    calls, _error = _never_started(vpc)
    sent = calls[0]["UserData"]
    # botocore base64-encodes it on the way (its own handler may have run already).
    scheduler = sent if isinstance(sent, bytes) else base64.b64decode(sent)
    text = gzip.decompress(scheduler).decode()
    assert text.startswith("#cloud-config")
    assert len(scheduler) < len(text.encode())  # compressed (no key material to compress now)
    assert len(scheduler) < USER_DATA_LIMIT / 2
    # The emulator (like cloud-init) unpacks it.
    plan = parse_user_data(scheduler)
    assert "distributed.cli.dask_scheduler" in plan.command


def test_oversized_user_data_is_refused_before_run_instances(vpc: dict[str, str]) -> None:
    import secrets

    # Random text does not compress: ~40 KB of env -> over 16,384 bytes even gzipped.
    calls, error = _never_started(vpc, env_vars={"BIG_SETTING": secrets.token_hex(20000)})
    from oxeo_flows.errors import ClusterError

    assert isinstance(error, ClusterError)
    assert not isinstance(error, ClusterStartTimeout)
    text = str(error)
    assert "16,384 bytes" in text
    assert "RunInstances was not called" in text
    assert "env_vars" in text
    assert calls == []
    assert _live(vpc["endpoint"]) == []
