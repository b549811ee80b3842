"""A Dask VM's read of its own TLS secret, without a cloud SDK: the VM starts sooner.

`oxeo_flows.dask_vm` runs first in every GCE/EC2 Dask VM's container and reads one secret.
Through the SDKs that read costs each VM process 0.40 s (``google-cloud-secret-manager``:
proto-plus types, ``google.api_core``, ``google.auth``) or 0.23 s (``boto3``) of imports
before ``distributed`` starts: on the path of every cluster's cold start. Here:

- **Secret Manager**: one ``AccessSecretVersion`` call on a plain ``grpc`` channel, its two
  messages encoded by hand (a string field; a payload's bytes field: the wire format of
  ``google.cloud.secretmanager.v1``), its ``data_crc32c`` checked. Credentials: the VM's
  service account, an access token from the metadata server (``GCE_METADATA_HOST``
  honoured), on a TLS channel. A loopback endpoint (an emulator) is dialled in plaintext and
  anonymously, as `secret_manager_client` does.
- **Secrets Manager**: one ``GetSecretValue`` POST (the JSON 1.1 protocol), signed with
  Signature Version 4 from the stdlib. Credentials: ``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, else the instance role through IMDSv2
  (``AWS_EC2_METADATA_SERVICE_ENDPOINT`` and ``AWS_EC2_METADATA_DISABLED`` honoured).

Where the credentials come from anything else (a key file in ``GOOGLE_APPLICATION_CREDENTIALS``;
AWS profiles, config files, web identity, container credentials) the SDK store is used, so
every credential source the SDKs know keeps working. The metadata servers are asked without a
proxy, as the SDKs do.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oxeo_flows._loopback import is_loopback_endpoint
from oxeo_flows.errors import ConfigError, SecretAccessError, SecretIntegrityError

__all__ = [
    "AwsCredentials",
    "crc32c",
    "decode_access_response",
    "encode_access_request",
    "read_aws_secret",
    "read_gcp_secret",
    "read_vm_secret",
    "sigv4_headers",
]

_ACCESS = "/google.cloud.secretmanager.v1.SecretManagerService/AccessSecretVersion"
_GOOGLE_ENDPOINT = "secretmanager.googleapis.com:443"
_METADATA_HOST = "metadata.google.internal"
_IMDS = "http://169.254.169.254"
#: Variables that name an AWS credential source other than the environment keys and IMDS.
_AWS_OTHER_SOURCES = (
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
#: No proxy for the metadata servers (link-local; a proxy would answer for another machine).
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def read_vm_secret(
    location: str, secret_id: str, endpoint: str | None, *, timeout: float = 10.0
) -> bytes | None:
    """The payload of ``secret_id`` at ``location`` (``gcp:PROJECT`` / ``aws:REGION``).

    Args:
        location: Where the cluster's secrets are.
        secret_id: The secret's id (``oxeo-dask-<cluster>-<role>``).
        endpoint: The secret API's endpoint (``OXEO_DASK_TLS_ENDPOINT``), None for the cloud's.
        timeout: Seconds for each request.

    Returns:
        The payload, or None when the secret does not exist.

    Raises:
        ConfigError: ``location`` is not of either form.
        SecretAccessError: The secret could not be read (credentials, permissions, network).
        SecretIntegrityError: A Secret Manager payload does not match its checksum.
    """
    cloud, _, where = location.partition(":")
    if cloud == "gcp" and where:
        return read_gcp_secret(where, secret_id, endpoint, timeout=timeout)
    if cloud == "aws" and where:
        return read_aws_secret(where, secret_id, endpoint, timeout=timeout)
    msg = f"{location!r} is not a Dask TLS secret location (expected gcp:PROJECT or aws:REGION)"
    raise ConfigError(msg)


# -- Secret Manager ---------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            msg = "truncated varint"
            raise ValueError(msg)
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """``(field number, value)`` of a protobuf message (varint / fixed / length-delimited)."""
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, at = _read_varint(data, at)
        elif wire == 1:
            value, at = int.from_bytes(data[at : at + 8], "little"), at + 8
        elif wire == 5:
            value, at = int.from_bytes(data[at : at + 4], "little"), at + 4
        elif wire == 2:
            size, at = _read_varint(data, at)
            value, at = data[at : at + size], at + size
        else:
            msg = f"unsupported wire type {wire}"
            raise ValueError(msg)
        if at > len(data):
            msg = "truncated message"
            raise ValueError(msg)
        yield number, value


def encode_access_request(name: str) -> bytes:
    """An ``AccessSecretVersionRequest`` (``name = 1``) in the protobuf wire format."""
    raw = name.encode()
    return b"\x0a" + _varint(len(raw)) + raw


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, as Secret Manager's ``data_crc32c``."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def decode_access_response(message: bytes) -> tuple[bytes, int | None]:
    """``payload.data`` and ``payload.data_crc32c`` of an ``AccessSecretVersionResponse``.

    (``payload = 2``; in it ``data = 1``, ``data_crc32c = 2``, None when absent.)

    Raises:
        ValueError: ``message`` is not one.
    """
    data, crc = b"", None
    for number, value in _fields(message):
        if number == 2 and isinstance(value, bytes):
            for inner, field_value in _fields(value):
                if inner == 1 and isinstance(field_value, bytes):
                    data = field_value
                elif inner == 2 and isinstance(field_value, int):
                    crc = field_value
    return data, crc


def _metadata_token(timeout: float) -> str:
    host = os.environ.get("GCE_METADATA_HOST") or _METADATA_HOST
    url = f"http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
    request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
    try:
        with _DIRECT.open(request, timeout=timeout) as response:
            return str(json.load(response)["access_token"])
    except (OSError, ValueError, KeyError) as exc:
        msg = (
            f"no access token from the metadata server {host}: {type(exc).__name__}: {exc}. "
            "The VM needs a service account (dask.gcp.service-account)"
        )
        raise SecretAccessError(msg) from None


def read_gcp_secret(
    project: str, secret_id: str, endpoint: str | None, *, timeout: float = 10.0
) -> bytes | None:
    """The latest version of Secret Manager secret ``secret_id`` in ``project``, or None.

    Raises:
        SecretAccessError: It cannot be read.
        SecretIntegrityError: Its payload does not match its checksum.
    """
    loopback = endpoint is not None and is_loopback_endpoint(endpoint)
    if not loopback and os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        from oxeo_flows.clusters.vm_secrets import JobSecretStore

        return JobSecretStore(project, endpoint).read(secret_id)
    from oxeo_flows._extras import require

    grpc: Any = require("grpc", "gcp")
    target = endpoint.split("://", 1)[-1].rstrip("/") if endpoint else _GOOGLE_ENDPOINT
    if loopback:
        channel = grpc.insecure_channel(target)
    else:
        if ":" not in target.rsplit("]", 1)[-1]:
            target += ":443"
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(),
            grpc.access_token_call_credentials(_metadata_token(timeout)),
        )
        channel = grpc.secure_channel(target, credentials)
    name = f"projects/{project}/secrets/{secret_id}/versions/latest"
    routing = ("x-goog-request-params", "name=" + urllib.parse.quote(name, safe=""))
    try:
        with channel:
            call = channel.unary_unary(_ACCESS)
            raw = call(encode_access_request(name), timeout=timeout, metadata=[routing])
    except grpc.RpcError as exc:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        if code == grpc.StatusCode.NOT_FOUND:
            return None
        details = exc.details() if callable(getattr(exc, "details", None)) else exc
        msg = f"could not read {name!r}: {getattr(code, 'name', code)}: {details}"
        raise SecretAccessError(msg) from None
    try:
        data, crc = decode_access_response(raw)
    except ValueError as exc:
        msg = f"could not read {name!r}: the answer is not an AccessSecretVersionResponse ({exc})"
        raise SecretAccessError(msg) from None
    if crc is not None and crc != crc32c(data):
        msg = f"the payload of {name!r} does not match its data_crc32c (corrupted in transit)"
        raise SecretIntegrityError(msg)
    return data


# -- Secrets Manager --------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsCredentials:
    """An access key pair and its session token (``repr`` shows the key id only)."""

    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:
        return f"AwsCredentials(access_key={self.access_key!r}, secret_key=***)"


def _sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sigv4_headers(
    method: str,
    url: str,
    body: bytes,
    *,
    region: str,
    service: str,
    credentials: AwsCredentials,
    headers: Mapping[str, str],
    now: datetime.datetime | None = None,
) -> dict[str, str]:
    """``headers`` plus ``X-Amz-Date``, the session token and a Signature Version 4.

    Every header given is signed, with ``Host``. ``url``'s query must be empty or already in
    canonical order.

    Returns:
        The headers to send.
    """
    when = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%SZ")
    parts = urllib.parse.urlsplit(url)
    out = {**headers, "X-Amz-Date": when}
    if credentials.token:
        out["X-Amz-Security-Token"] = credentials.token
    signed = {k.lower(): " ".join(v.split()) for k, v in out.items()}
    signed["host"] = parts.netloc
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            urllib.parse.quote(parts.path or "/", safe="/~"),
            parts.query,
            "".join(f"{k}:{signed[k]}\n" for k in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{when[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", when, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + credentials.secret_key).encode()
    for part in (when[:8], region, service, "aws4_request"):
        key = _sign(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out


def _imds_credentials(timeout: float) -> AwsCredentials:
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        msg = (
            "no AWS credentials: AWS_ACCESS_KEY_ID is not set and AWS_EC2_METADATA_DISABLED "
            "turns the instance role off"
        )
        raise SecretAccessError(msg)
    base = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", _IMDS).rstrip("/")
    try:
        ask = urllib.request.Request(  # noqa: S310 - the instance metadata service
            f"{base}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"},
        )
        with _DIRECT.open(ask, timeout=timeout) as response:
            token = response.read().decode()
        auth = {"X-aws-ec2-metadata-token": token}
        where = f"{base}/latest/meta-data/iam/security-credentials/"
        with _DIRECT.open(urllib.request.Request(where, headers=auth), timeout=timeout) as r:  # noqa: S310
            role = r.read().decode().split()[0]
        with _DIRECT.open(urllib.request.Request(where + role, headers=auth), timeout=timeout) as r:  # noqa: S310
            data = json.load(r)
        return AwsCredentials(data["AccessKeyId"], data["SecretAccessKey"], data.get("Token"))
    except (OSError, ValueError, KeyError, IndexError) as exc:
        msg = (
            f"no AWS credentials from the instance metadata service {base}: "
            f"{type(exc).__name__}: {exc}. The VM needs an instance profile "
            "(dask.ec2.iam-instance-profile)"
        )
        raise SecretAccessError(msg) from None


def _aws_credentials(timeout: float) -> AwsCredentials:
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return AwsCredentials(key, secret, os.environ.get("AWS_SESSION_TOKEN") or None)
    return _imds_credentials(timeout)


def _aws_other_source() -> bool:
    if any(os.environ.get(name) for name in _AWS_OTHER_SOURCES):
        return True
    home = Path.home()
    return (home / ".aws" / "credentials").exists() or (home / ".aws" / "config").exists()


def read_aws_secret(
    region: str, secret_id: str, endpoint: str | None, *, timeout: float = 10.0
) -> bytes | None:
    """``SecretBinary`` of Secrets Manager secret ``secret_id`` in ``region``, or None.

    Raises:
        SecretAccessError: It cannot be read.
    """
    loopback = endpoint is not None and is_loopback_endpoint(endpoint)
    if not loopback and _aws_other_source():
        from oxeo_flows.clusters.vm_secrets import AwsSecretStore

        return AwsSecretStore(region, endpoint).read(secret_id)
    # An emulator (moto) gets a dummy key, like the anonymous loopback path of the Google clients.
    credentials = AwsCredentials("loopback", "loopback") if loopback else _aws_credentials(timeout)
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    url = (endpoint or f"https://secretsmanager.{region}.{suffix}").rstrip("/") + "/"
    body = json.dumps({"SecretId": secret_id}).encode()
    headers = sigv4_headers(
        "POST",
        url,
        body,
        region=region,
        service="secretsmanager",
        credentials=credentials,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "secretsmanager.GetSecretValue",
        },
    )
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        kind, text = _aws_error(exc)
        if kind == "ResourceNotFoundException":
            return None
        msg = f"could not read {secret_id!r} in Secrets Manager ({region}): {kind}: {text}"
        raise SecretAccessError(msg) from None
    except (OSError, ValueError) as exc:
        msg = f"could not read {secret_id!r} in Secrets Manager ({region}): {exc}"
        raise SecretAccessError(msg) from None
    import base64

    if "SecretBinary" not in answer:
        msg = f"{secret_id!r} in Secrets Manager ({region}) holds no SecretBinary"
        raise SecretAccessError(msg)
    return base64.b64decode(answer["SecretBinary"])


def _aws_error(exc: urllib.error.HTTPError) -> tuple[str, str]:
    try:
        data = json.loads(exc.read() or b"{}")
    except ValueError:
        data = {}
    kind = str(data.get("__type") or exc.headers.get("x-amzn-ErrorType") or exc.code)
    return kind.rsplit("#", 1)[-1].split(":", 1)[0], str(data.get("message") or exc.reason)
