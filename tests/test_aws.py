"""`oxeo_flows.aws.share_service_models`: one model loader for the sessions of a process."""

from __future__ import annotations

import asyncio

from oxeo_flows.aws import share_service_models


def test_sessions_share_one_loader_and_still_work(moto: str) -> None:
    import boto3
    from aiobotocore.session import get_session

    first = share_service_models(boto3.session.Session(region_name="eu-west-1")._session)
    second = share_service_models(get_session())
    assert second.get_component("data_loader") is first.get_component("data_loader")
    # A client of each kind still talks to the service (moto).
    client = boto3.session.Session(region_name="eu-west-1")
    share_service_models(client._session)
    assert "Vpcs" in client.client("ec2", endpoint_url=moto).describe_vpcs()

    async def describe() -> dict[str, object]:
        async with second.create_client("ec2", region_name="eu-west-1", endpoint_url=moto) as ec2:
            return dict(await ec2.describe_vpcs())

    assert "Vpcs" in asyncio.run(describe())
