"""A Dask VM's SDK-free read of its TLS secret (`oxeo_flows.clusters.vm_read`).

Against the Secret Manager emulator (Google's own protos) and moto's Secrets Manager; the hand
encoded messages and the Signature Version 4 are checked against Google's proto classes and
botocore's signer; the credentials come from loopback fakes of the two metadata servers.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oxeo_flows.clusters.vm_read import (
    AwsCredentials,
    crc32c,
    decode_access_response,
    encode_access_request,
    read_aws_secret,
    read_gcp_secret,
    read_vm_secret,
    sigv4_headers,
)
from oxeo_flows.errors import ConfigError, SecretAccessError, SecretIntegrityError
from oxeo_flows.testing.secretmanager import SecretManagerEmulator
from tests._util import free_port, run_python
from tests.fakes.metadata import GceMetadata, Imds

PROJECT = "oxeo-test"


@pytest.fixture
def aws(moto: str) -> Iterator[str]:
    """moto's endpoint, reset after the test too (its state is shared by the process)."""
    import urllib.request

    yield moto
    with urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST")):
        pass


@pytest.fixture
def secret_manager_emulator() -> Iterator[SecretManagerEmulator]:
    with SecretManagerEmulator() as emulator:
        yield emulator


# -- the wire format, against Google's own message classes -------------------------------------


@pytest.mark.parametrize(
    "name", ["projects/p/secrets/s/versions/latest", "projects/x/" + "a" * 300]
)
def test_access_request_is_googles_message(name: str) -> None:
    from google.cloud.secretmanager_v1 import AccessSecretVersionRequest

    raw = encode_access_request(name)
    assert AccessSecretVersionRequest.deserialize(raw).name == name
    assert raw == AccessSecretVersionRequest.serialize(AccessSecretVersionRequest(name=name))


@pytest.mark.parametrize("data", [b"", b"x", bytes(range(256)) * 40])
def test_access_response_of_googles_message_is_decoded(data: bytes) -> None:
    import google_crc32c
    from google.cloud.secretmanager_v1 import AccessSecretVersionResponse, SecretPayload

    crc = google_crc32c.value(data)
    message = AccessSecretVersionResponse(
        name="projects/p/secrets/s/versions/3",
        payload=SecretPayload(data=data, data_crc32c=crc),
    )
    assert decode_access_response(AccessSecretVersionResponse.serialize(message)) == (data, crc)
    assert crc32c(data) == crc
    bare = AccessSecretVersionResponse(payload=SecretPayload(data=data))
    assert decode_access_response(AccessSecretVersionResponse.serialize(bare)) == (data, None)


def test_a_truncated_response_is_refused() -> None:
    with pytest.raises(ValueError, match="truncated"):
        decode_access_response(b"\x12\x10\x0a\x05ab")


# -- Secret Manager ---------------------------------------------------------------------------


def test_gcp_read_returns_the_latest_version_and_none_when_missing(
    secret_manager_emulator: SecretManagerEmulator,
) -> None:
    sm = secret_manager_emulator
    sm.add(PROJECT, "oxeo-dask-c1-worker", b"old")
    sm.add(PROJECT, "oxeo-dask-c1-worker", b'{"ca": "..."}')
    got = read_vm_secret(f"gcp:{PROJECT}", "oxeo-dask-c1-worker", sm.endpoint)
    assert got == b'{"ca": "..."}'
    assert sm.accessed[-1] == f"projects/{PROJECT}/secrets/oxeo-dask-c1-worker/versions/latest"
    assert read_gcp_secret(PROJECT, "oxeo-dask-absent", sm.endpoint) is None


def test_gcp_read_checks_the_payload_checksum(
    secret_manager_emulator: SecretManagerEmulator,
) -> None:
    sm = secret_manager_emulator
    sm.add(PROJECT, "oxeo-dask-c2-worker", b"payload")
    sm.corrupt_crc()
    with pytest.raises(SecretIntegrityError, match="data_crc32c"):
        read_gcp_secret(PROJECT, "oxeo-dask-c2-worker", sm.endpoint)
    assert read_gcp_secret(PROJECT, "oxeo-dask-c2-worker", sm.endpoint) == b"payload"


def test_gcp_read_maps_a_denied_call_and_a_dead_endpoint(
    secret_manager_emulator: SecretManagerEmulator,
) -> None:
    sm = secret_manager_emulator
    sm.add(PROJECT, "oxeo-dask-c3-worker", b"payload")
    sm.fail(grpc.StatusCode.PERMISSION_DENIED, message="no secretAccessor")
    with pytest.raises(SecretAccessError, match="PERMISSION_DENIED: no secretAccessor"):
        read_gcp_secret(PROJECT, "oxeo-dask-c3-worker", sm.endpoint)
    with pytest.raises(SecretAccessError, match="UNAVAILABLE"):
        read_gcp_secret(PROJECT, "x", f"127.0.0.1:{free_port()}", timeout=2)


def test_gcp_token_comes_from_the_metadata_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from oxeo_flows.clusters.vm_read import _metadata_token

    with GceMetadata() as metadata:
        monkeypatch.setenv("GCE_METADATA_HOST", metadata.host)
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # never used for the metadata
        assert _metadata_token(5) == GceMetadata.token
        assert metadata.requests[0][2]["Metadata-Flavor"] == "Google"
        metadata.fail = True
        with pytest.raises(SecretAccessError, match="service account"):
            _metadata_token(5)


# -- Secrets Manager --------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "session-token"])
def test_sigv4_matches_botocore(token: str | None) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = "https://secretsmanager.eu-west-1.amazonaws.com/"
    body = json.dumps({"SecretId": "oxeo-dask-c-worker"}).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "secretsmanager.GetSecretValue",
    }
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(
        Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI", token), "secretsmanager", "eu-west-1"
    ).add_auth(request)
    when = datetime.datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    ours = sigv4_headers(
        "POST",
        url,
        body,
        region="eu-west-1",
        service="secretsmanager",
        credentials=AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI", token),
        headers=headers,
        now=when.replace(tzinfo=datetime.UTC),
    )
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


def test_aws_credentials_repr_hides_the_secret() -> None:
    assert "s3cr3t" not in repr(AwsCredentials("AKID", "s3cr3t", "tok"))


def test_aws_read_returns_the_binary_and_none_when_missing(aws: str) -> None:
    moto = aws
    import boto3

    sm = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto)
    sm.create_secret(Name="oxeo-dask-a1-worker", SecretBinary=b"\x00bundle\xff")
    assert read_vm_secret("aws:eu-west-1", "oxeo-dask-a1-worker", moto) == b"\x00bundle\xff"
    assert read_aws_secret("eu-west-1", "oxeo-dask-absent", moto) is None
    sm.create_secret(Name="oxeo-dask-a1-text", SecretString="text")
    with pytest.raises(SecretAccessError, match="no SecretBinary"):
        read_aws_secret("eu-west-1", "oxeo-dask-a1-text", moto)
    with pytest.raises(SecretAccessError, match="Secrets Manager"):
        read_aws_secret("eu-west-1", "x", f"http://127.0.0.1:{free_port()}", timeout=2)


def test_aws_credentials_from_the_environment_then_imdsv2(monkeypatch: pytest.MonkeyPatch) -> None:
    from oxeo_flows.clusters.vm_read import _aws_credentials

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")
    assert _aws_credentials(5) == AwsCredentials("AKIDENV", "env-secret", "env-token")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    with pytest.raises(SecretAccessError, match="AWS_EC2_METADATA_DISABLED"):
        _aws_credentials(5)  # the test environment turns IMDS off
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    with Imds() as imds:
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint)
        got = _aws_credentials(5)
        assert got == AwsCredentials(
            "ASIAFAKEVMROLE", "fake-vm-role-secret", "fake-vm-role-session"
        )
        assert [(m, p) for m, p, _ in imds.requests] == [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/iam/security-credentials/"),
            ("GET", "/latest/meta-data/iam/security-credentials/oxeo-dask-vm"),
        ]
        imds.fail = True
        with pytest.raises(SecretAccessError, match="instance profile"):
            _aws_credentials(5)


def test_other_credential_sources_use_the_sdk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from oxeo_flows.clusters.vm_read import _aws_other_source

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert not _aws_other_source()
    monkeypatch.setenv("AWS_PROFILE", "prod")
    assert _aws_other_source()
    monkeypatch.delenv("AWS_PROFILE")
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[default]\n")
    assert _aws_other_source()


def test_a_bad_location_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="gcp:PROJECT or aws:REGION"):
        read_vm_secret("azure:x", "s", None)


# -- the VM process ---------------------------------------------------------------------------


def test_the_vm_read_imports_no_cloud_sdk(
    secret_manager_emulator: SecretManagerEmulator, aws: str
) -> None:
    import boto3

    moto = aws
    secret_manager_emulator.add(PROJECT, "oxeo-dask-i1-worker", b'{"k": 1}')
    boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto).create_secret(
        Name="oxeo-dask-i1-worker", SecretBinary=b'{"k": 2}'
    )
    done = run_python(
        f"""
        import sys
        from oxeo_flows.dask_vm import fetch_role_bundle
        assert fetch_role_bundle("gcp:{PROJECT}/oxeo-dask-i1", "worker",
            endpoint="{secret_manager_emulator.endpoint}", timeout=10) == b'{{"k": 1}}'
        assert fetch_role_bundle("aws:eu-west-1/oxeo-dask-i1", "worker",
            endpoint="{moto}", timeout=10) == b'{{"k": 2}}'
        sdk = ("google.cloud.", "google.api_core", "google.auth", "boto3", "botocore")
        print(sorted(m for m in sys.modules if m.startswith(sdk)))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
