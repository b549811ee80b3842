"""``oxeo-flows clusters cleanup --stack X`` touches the VMs of stack X only.

On the emulated Compute Engine (`oxeo_flows.testing.compute`) and on moto's EC2: VMs of two
stacks' clusters (``prod`` and ``dev``) and one unlabelled VM; cleaning up ``prod`` deletes
the ``prod`` VMs and leaves the others running; ``--all-stacks`` widens it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from oxeo_flows.testing.compute import ComputeEmulator
from oxeo_flows.testing.secretmanager import SecretManagerEmulator

ZONE = "europe-west4-a"

STACKS = """
[tool.oxeo-flows]
default-stack = "dev"
{sections}
"""


@pytest.fixture
def compute() -> Iterator[ComputeEmulator]:
    with ComputeEmulator() as emulator:
        yield emulator


def _gce_vm(emulator: ComputeEmulator, name: str, labels: dict[str, str]) -> None:
    from oxeo_flows.clusters.gcp import compute_client

    body = {
        "name": name,
        "machineType": f"zones/{ZONE}/machineTypes/e2-small",
        "networkInterfaces": [
            {"subnetwork": "projects/oxeo-test/regions/europe-west4/subnetworks/dask"}
        ],
        "labels": labels,
    }
    client = compute_client(emulator.endpoint)
    client.instances().insert(project="oxeo-test", zone=ZONE, body=body).execute()


def _cluster_labels(cluster: str, stack: str) -> dict[str, str]:
    from oxeo_flows.clusters._vm import cluster_labels

    return cluster_labels(cluster, "fr-1", stack)


@pytest.fixture
def secrets() -> Iterator[SecretManagerEmulator]:
    with SecretManagerEmulator() as emulator:
        yield emulator


def test_gce_cleanup_of_prod_leaves_dev_running(
    compute: ComputeEmulator, secrets: SecretManagerEmulator, stack_file: Any
) -> None:
    from oxeo_flows.cli import app
    from oxeo_flows.clusters.vm_secrets import secret_base

    for cluster in ("oxeo-0000prod", "oxeo-00000dev"):
        for role in ("scheduler", "worker"):
            secrets.add("oxeo-test", f"{secret_base(cluster)}-{role}", "{}")

    _gce_vm(compute, "dask-prod-scheduler", _cluster_labels("oxeo-0000prod", "prod"))
    _gce_vm(compute, "dask-prod-worker", _cluster_labels("oxeo-0000prod", "prod"))
    _gce_vm(compute, "dask-dev-scheduler", _cluster_labels("oxeo-00000dev", "dev"))
    _gce_vm(compute, "postgres", {"team": "db"})
    gcp = f"""
[tool.oxeo-flows.stacks.{{name}}.gcp]
project = "oxeo-test"
[tool.oxeo-flows.stacks.{{name}}.gcp.endpoints]
compute = "{compute.endpoint}"
secret-manager = "{secrets.endpoint}"
"""
    stack_file(STACKS.format(sections=gcp.format(name="prod") + gcp.format(name="dev")))
    cli = CliRunner()
    listed = cli.invoke(app, ["clusters", "list", "--stack", "prod", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {(r["name"], r["stack"]) for r in json.loads(listed.output)} == {
        ("dask-prod-scheduler", "prod"),
        ("dask-prod-worker", "prod"),
    }
    done = cli.invoke(app, ["clusters", "cleanup", "--stack", "prod", "--yes"])
    assert done.exit_code == 0, done.output
    compute.wait_idle()
    assert sorted(compute.vms) == ["dask-dev-scheduler", "postgres"]
    assert "delete dask-dev-scheduler" not in compute.calls
    # The prod cluster's TLS secrets went with its VMs; dev's are still there.
    assert sorted(name for _project, name in secrets.secrets) == [
        "oxeo-dask-oxeo-00000dev-scheduler",
        "oxeo-dask-oxeo-00000dev-worker",
    ]
    # Every stack: the dev cluster too, never the unlabelled VM.
    every = cli.invoke(app, ["clusters", "cleanup", "--all-stacks", "--yes"])
    assert every.exit_code == 0, every.output
    compute.wait_idle()
    assert sorted(compute.vms) == ["postgres"]
    assert secrets.secrets == {}


def test_ec2_cleanup_of_prod_leaves_dev_running(moto: str, stack_file: Any) -> None:
    import boto3

    from oxeo_flows.cli import app
    from oxeo_flows.clusters.ec2 import ec2_tags

    ec2 = boto3.client("ec2", region_name="eu-west-1", endpoint_url=moto)
    ami = ec2.describe_images()["Images"][0]["ImageId"]

    def launch(tags: dict[str, str]) -> str:
        spec = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
        inst = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=spec)
        return str(inst["Instances"][0]["InstanceId"])

    prod = launch(ec2_tags("oxeo-0000prod", "fr-1", "prod"))
    dev = launch(ec2_tags("oxeo-00000dev", "fr-2", "dev"))
    other = launch({"Name": "database"})
    aws = f"""
[tool.oxeo-flows.stacks.{{name}}.aws]
region = "eu-west-1"
endpoint-url = "{moto}"
"""
    stack_file(STACKS.format(sections=aws.format(name="prod") + aws.format(name="dev")))

    def live() -> set[str]:
        found = ec2.describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        )
        return {i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]}

    cli = CliRunner()
    done = cli.invoke(app, ["clusters", "cleanup", "--stack", "prod", "--yes"])
    assert done.exit_code == 0, done.output
    assert prod in done.output
    assert dev not in done.output
    assert live() == {dev, other}
    every = cli.invoke(app, ["clusters", "cleanup", "--all-stacks", "--yes"])
    assert every.exit_code == 0, every.output
    assert live() == {other}
