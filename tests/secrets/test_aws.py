"""AWS Secrets Manager source against moto's HTTP server (and a fault-injecting proxy)."""

from __future__ import annotations

import json

import boto3
import pytest

from oxeo_flows import SecretAccessError, SecretNotFoundError
from oxeo_flows.secrets import load_secret, resolve_secret
from tests.fakes.proxy import FaultProxy

STACK = """
[tool.oxeo-flows.stacks.local]
secrets.sources = ["aws"]
secrets.retry-initial-delay = 0.01
secrets.retry-max-delay = 0.05
aws.region = "eu-west-1"
"""


@pytest.fixture
def sm(moto: str):  # type: ignore[no-untyped-def]
    return boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto)


def test_secret_string_binary_and_json_key(sm, stack_file) -> None:
    stack_file(STACK)
    sm.create_secret(Name="prefect-api-key", SecretString="pnu_string_value")
    sm.create_secret(Name="binary-one", SecretBinary=b"binary-text-value")
    sm.create_secret(
        Name="prod/db", SecretString=json.dumps({"user": "admin", "password": "pw-value", "n": 3})
    )
    loaded = resolve_secret("prefect-api-key")
    assert loaded.source == "aws"
    assert loaded.where.startswith("arn:aws:secretsmanager:eu-west-1:")
    assert loaded.value.get_secret_value() == "pnu_string_value"
    assert load_secret("aws://binary-one").get_secret_value() == "binary-text-value"
    assert load_secret("aws://prod/db#password").get_secret_value() == "pw-value"
    assert load_secret("aws://prod/db#n").get_secret_value() == "3"
    with pytest.raises(SecretNotFoundError, match=r"no field 'nope' \(fields: n, password, user\)"):
        load_secret("aws://prod/db#nope")


def test_versions_by_stage_and_id(sm, stack_file) -> None:
    stack_file(STACK)
    first = sm.create_secret(Name="rotating", SecretString="old-rotating")
    sm.put_secret_value(SecretId="rotating", SecretString="new-rotating")
    assert load_secret("rotating").get_secret_value() == "new-rotating"
    assert load_secret("rotating", version="AWSPREVIOUS").get_secret_value() == "old-rotating"
    assert load_secret("rotating", version=first["VersionId"]).get_secret_value() == "old-rotating"


def test_not_found(sm, stack_file) -> None:
    stack_file(STACK)
    with pytest.raises(SecretNotFoundError, match="aws: AWS secret 'missing' does not exist"):
        load_secret("missing")


def test_endpoint_from_stack_wins_over_env(sm, stack_file, moto: str, monkeypatch) -> None:
    stack_file(STACK + f'aws.endpoint-url = "{moto}"\n')
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # closed port
    sm.create_secret(Name="via-stack", SecretString="stack-endpoint-value")
    assert load_secret("via-stack").get_secret_value() == "stack-endpoint-value"


def test_throttling_is_retried(sm, stack_file, moto: str) -> None:
    sm.create_secret(Name="busy", SecretString="busy-value")
    with FaultProxy(moto) as proxy:
        stack_file(STACK + f'aws.endpoint-url = "{proxy.url}"\n')
        proxy.fail("ThrottlingException", times=2)
        assert load_secret("busy").get_secret_value() == "busy-value"
        assert proxy.calls["GetSecretValue"] == 3


def test_throttling_beyond_retries_stops(sm, stack_file, moto: str) -> None:
    sm.create_secret(Name="busy", SecretString="busy-value")
    with FaultProxy(moto) as proxy:
        stack_file(STACK + f'secrets.retries = 2\naws.endpoint-url = "{proxy.url}"\n')
        proxy.fail("ThrottlingException", times=10)
        with pytest.raises(SecretAccessError, match=r"ThrottlingException.*3 attempt"):
            load_secret("busy")
        assert proxy.calls["GetSecretValue"] == 3


def test_access_denied_stops_the_chain(sm, stack_file, moto: str, monkeypatch) -> None:
    sm.create_secret(Name="guarded", SecretString="guarded-value")
    monkeypatch.setenv("GUARDED", "weaker-env-value")
    with FaultProxy(moto) as proxy:
        stack_file(
            STACK.replace('["aws"]', '["aws", "env"]') + f'aws.endpoint-url = "{proxy.url}"\n'
        )
        proxy.fail("AccessDeniedException")
        with pytest.raises(SecretAccessError, match="secretsmanager:GetSecretValue"):
            load_secret("guarded")
        assert proxy.calls["GetSecretValue"] == 1


def test_connection_refused_is_transient(stack_file) -> None:
    stack_file(STACK + 'secrets.retries = 1\naws.endpoint-url = "http://127.0.0.1:9"\n')
    with pytest.raises(SecretAccessError, match=r"EndpointConnectionError.*2 attempt"):
        load_secret("anything")


def test_credentials_block_from_stack(sm, stack_file, moto: str, prefect_api: str) -> None:
    import uuid

    from prefect_aws import AwsClientParameters, AwsCredentials

    block_name = f"aws-creds-{uuid.uuid4().hex[:8]}"
    AwsCredentials(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="eu-west-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=moto),
    ).save(block_name)
    sm.create_secret(Name="via-block", SecretString="block-creds-value")
    stack_file(STACK + f'aws.credentials-block = "{block_name}"\n')
    assert load_secret("via-block").get_secret_value() == "block-creds-value"


def test_missing_credentials_block_is_an_access_error(stack_file, prefect_api: str) -> None:
    stack_file(STACK + 'aws.credentials-block = "no-such-aws-block"\n')
    with pytest.raises(SecretAccessError, match="no-such-aws-block"):
        load_secret("anything")


def test_assume_role(sm, stack_file) -> None:
    sm.create_secret(Name="as-role", SecretString="role-value")
    stack_file(STACK + 'aws.assume-role-arn = "arn:aws:iam::123456789012:role/reader"\n')
    assert load_secret("as-role").get_secret_value() == "role-value"
