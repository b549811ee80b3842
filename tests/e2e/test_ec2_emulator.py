"""The EC2 emulator: instances boot when RunInstances returns, calls are recorded, and a
second TerminateInstances is answered as EC2 answers it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from oxeo_flows.testing.ec2 import EC2Emulator
from tests._util import wait_until

CLOUD_INIT = """#cloud-config
runcmd:
  - docker run --net=host x/flows:1 python -c "import time; time.sleep(60)"
"""


@pytest.fixture
def emulator() -> Iterator[EC2Emulator]:
    # No poll within the test: only the wake after RunInstances / TerminateInstances acts.
    with EC2Emulator(network="127.123", poll=3600) as emu:
        yield emu


def _run(emu: EC2Emulator, name: str, **extra: Any) -> str:
    ec2 = emu.client()
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    reply = ec2.run_instances(
        ImageId=ami,
        MinCount=1,
        MaxCount=1,
        UserData=CLOUD_INIT,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}],
        **extra,
    )
    return str(reply["Instances"][0]["InstanceId"])


def test_an_instance_boots_when_run_instances_returns(emulator: EC2Emulator) -> None:
    iid = _run(emulator, "dask-x-scheduler", SubnetId=emulator.subnet_id)
    # With an hour between polls, only RunInstances' wake-up can have booted it.
    assert wait_until(lambda: iid in emulator.instances, 20)
    assert wait_until(lambda: emulator.instances[iid].container_started_at is not None, 20)
    assert emulator.processes()

    emulator.client().terminate_instances(InstanceIds=[iid])
    assert wait_until(lambda: emulator.processes() == [], 20)
    assert emulator.instances[iid].stopped.is_set()


def test_calls_are_recorded_with_their_name_tags_but_not_the_emulators_own(
    emulator: EC2Emulator,
) -> None:
    iid = _run(emulator, "dask-y-worker-1", SubnetId=emulator.subnet_id)
    assert wait_until(lambda: iid in emulator.instances, 20)
    emulator.client().terminate_instances(InstanceIds=[iid])
    calls = [entry for _, entry in emulator.call_times]
    # The VPC set-up, the watcher's DescribeInstances and DescribeInstanceAttribute are the
    # emulator's own.
    assert calls == ["DescribeImages", "RunInstances dask-y-worker-1", "TerminateInstances"]
    times = [t for t, _ in emulator.call_times]
    assert times == sorted(times)


def test_a_second_terminate_of_an_instance_is_answered_as_terminated(
    emulator: EC2Emulator,
) -> None:
    # dask-cloudprovider's own launch spec: an explicit network interface, deleted on
    # termination. moto fails a second TerminateInstances of such an instance (it deletes the
    # interface again); EC2 answers it, and so does the emulator.
    iid = _run(
        emulator,
        "dask-z-scheduler",
        NetworkInterfaces=[
            {
                "DeviceIndex": 0,
                "SubnetId": emulator.subnet_id,
                "Groups": [emulator.security_group_id],
                "AssociatePublicIpAddress": False,
                "DeleteOnTermination": True,
            }
        ],
    )
    assert wait_until(lambda: len(emulator.processes()) == 1, 20)
    ec2 = emulator.client()
    first = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"]
    assert first[0]["InstanceId"] == iid
    again = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"]
    assert again == [
        {
            "InstanceId": iid,
            "CurrentState": {"Code": 48, "Name": "terminated"},
            "PreviousState": {"Code": 48, "Name": "terminated"},
        }
    ]
    # Its interface is gone, it is still seen as this emulator's and stopped.
    assert wait_until(lambda: emulator.processes() == [], 20)


def test_json_protocol_bodies_pass_through_untouched(emulator: EC2Emulator) -> None:
    sm = emulator.client("secretsmanager")
    value = "canary-4d1f\u00e9-value"
    arn = sm.create_secret(Name="oxeo-emulator-body-check", SecretString=value)["ARN"]
    try:
        assert sm.get_secret_value(SecretId=arn)["SecretString"] == value
        assert all(value not in entry for _, entry in emulator.call_times)
    finally:
        sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
