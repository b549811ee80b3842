"""The ``aws`` secret source: AWS Secrets Manager.

A secret ``NAME`` (or an ARN) is read with ``GetSecretValue``; ``SecretString`` is returned as
is and ``SecretBinary`` decoded as UTF-8. ``aws://NAME#KEY`` returns the field ``KEY`` of a
JSON secret (other JSON types than strings are returned as JSON text). The version
``latest`` reads the ``AWSCURRENT`` stage; a version that looks like a version id (a UUID) is
read by id, anything else as a staging label (e.g. ``AWSPREVIOUS``).

The client is built from the stack's ``[aws]`` section: ``credentials-block`` (a saved
prefect-aws ``AwsCredentials`` block) or ``assume-role-arn`` go through prefect-aws; otherwise
boto3's own credential chain is used with ``profile`` and ``region``. The endpoint is
``aws.endpoint-url``, else ``AWS_ENDPOINT_URL``, else AWS's.

Errors: ``ResourceNotFoundException`` moves on to the next source; throttling, internal
errors, timeouts and connection failures are retried; anything else (access denied,
decryption failure, a secret scheduled for deletion) stops the chain.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows._redact import register_secret_value
from oxeo_flows.errors import ConfigError, SecretAccessError
from oxeo_flows.secrets._base import Fetched, Lookup, SourceNotFound, SourceTransient

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack

__all__ = ["secrets_manager_client"]

CACHEABLE = True
_VERSION_ID = re.compile(r"^[0-9a-fA-F-]{32,64}$")
_clients: dict[Hashable, Any] = {}
_lock = threading.Lock()

_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalServiceError",
        "InternalServiceErrorException",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def _settings(stack: Stack) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    aws = stack.aws
    endpoint = aws.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    return (aws.region, aws.profile, endpoint, aws.credentials_block, aws.assume_role_arn)


def identity(lookup: Lookup, stack: Stack) -> Hashable:
    """Region, profile, endpoint, credentials block and role decide where the secret is read."""
    return _settings(stack)


def secrets_manager_client(stack: Stack) -> Any:
    """A (cached) boto3 ``secretsmanager`` client built from the stack's ``[aws]`` section.

    Botocore's own retries are off: `load_secret` retries with its own bounded backoff.

    Args:
        stack: The stack to read ``aws.*`` from.

    Returns:
        A boto3 Secrets Manager client.

    Raises:
        MissingExtraError: boto3 (or prefect-aws, for a credentials block) is not installed.
        SecretAccessError: The credentials block cannot be loaded.
    """
    key = _settings(stack)
    region, profile, endpoint, block, role = key
    with _lock:
        client = _clients.get(key)
        if client is not None:
            return client
        boto3 = require("boto3", "aws")
        config = require("botocore.config", "aws").Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=stack.secrets.timeout,
            read_timeout=stack.secrets.timeout,
        )
        if block or role:
            prefect_aws = require("prefect_aws", "aws")
            if block:
                try:
                    creds = prefect_aws.AwsCredentials.load(block, _sync=True)
                except ValueError as exc:
                    msg = (
                        f"aws: cannot load the AwsCredentials block {block!r} named by "
                        f"{stack.describe('aws', 'credentials_block')}: {exc}"
                    )
                    raise SecretAccessError(msg) from exc
            else:
                creds = prefect_aws.AwsCredentials(
                    region_name=region, profile_name=profile, assume_role_arn=role
                )
            session = creds.get_boto3_session()
            params = getattr(creds, "aws_client_parameters", None)
            endpoint = endpoint or getattr(params, "endpoint_url", None)
            client = _client(session, endpoint, config, stack)
        else:
            botocore_exc = require("botocore.exceptions", "aws")
            try:
                session = boto3.session.Session(profile_name=profile, region_name=region)
            except botocore_exc.ProfileNotFound:
                msg = (
                    f"aws: the AWS profile {profile!r} ({stack.describe('aws', 'profile')}) is "
                    "not in ~/.aws/config; fix aws.profile, or create the profile with "
                    "`aws configure --profile NAME`"
                )
                raise ConfigError(msg) from None
            client = _client(session, endpoint, config, stack)
        _clients[key] = client
        return client


def _client(session: Any, endpoint: str | None, config: Any, stack: Stack) -> Any:
    """``session.client("secretsmanager")``, with a missing region named as a stack key."""
    botocore_exc = require("botocore.exceptions", "aws")
    no_region = (
        f"aws: no AWS region for Secrets Manager in stack {stack.name!r}: aws.region is not "
        "set and neither AWS_REGION nor AWS_DEFAULT_REGION is. Set aws.region in the stack "
        "(e.g. OXEO_FLOWS_AWS__REGION=eu-west-1), or use a profile that has a region"
    )
    if not str(getattr(session, "region_name", None) or "").strip():
        raise ConfigError(no_region)
    try:
        return session.client("secretsmanager", endpoint_url=endpoint, config=config)
    except ValueError as exc:
        if not endpoint or "endpoint" not in str(exc).lower():
            raise
        msg = (
            f"aws: the Secrets Manager endpoint {endpoint!r} (aws.endpoint-url of stack "
            f"{stack.name!r}, or AWS_ENDPOINT_URL) is not a URL; give e.g. "
            "'https://secretsmanager.eu-west-1.amazonaws.com' or 'http://127.0.0.1:5000'"
        )
        raise ConfigError(msg) from None
    except botocore_exc.NoRegionError:
        raise ConfigError(no_region) from None


def _select(value: str, lookup: Lookup, where: str) -> str:
    key = lookup.json_key
    if key is None:
        return value
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        msg = f"aws: {where} is not JSON, so field {key!r} cannot be selected from it"
        raise SecretAccessError(msg) from None
    if not isinstance(data, dict):
        msg = f"aws: {where} is JSON but not an object, so field {key!r} cannot be selected"
        raise SecretAccessError(msg)
    if key not in data:
        fields = ", ".join(sorted(map(str, data))) or "(none)"
        raise SourceNotFound(f"{where} has no field {key!r} (fields: {fields})")
    field = data[key]
    return field if isinstance(field, str) else json.dumps(field)


def fetch(lookup: Lookup, stack: Stack) -> Fetched:
    """Call ``GetSecretValue`` once."""
    botocore_exc = require("botocore.exceptions", "aws")
    client = secrets_manager_client(stack)
    kwargs: dict[str, str] = {"SecretId": lookup.name}
    if lookup.version != "latest":
        field = "VersionId" if _VERSION_ID.match(lookup.version) else "VersionStage"
        kwargs[field] = lookup.version
    where = f"AWS secret {lookup.name!r}" + (
        f" (version {lookup.version})" if lookup.version != "latest" else ""
    )
    try:
        response = client.get_secret_value(**kwargs)
    except botocore_exc.ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", ""))
        if code == "ResourceNotFoundException":
            raise SourceNotFound(f"{where} does not exist") from None
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
            raise SourceTransient(f"{where}: {code}: {message}") from exc
        if code in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException"):
            msg = (
                f"aws: access to {where} was denied ({code}: {message}). Allow "
                "secretsmanager:GetSecretValue (and kms:Decrypt for its key) to the caller."
            )
        else:
            msg = f"aws: reading {where} failed: {code}: {message}"
        raise SecretAccessError(msg) from exc
    except (
        botocore_exc.EndpointConnectionError,
        botocore_exc.ConnectTimeoutError,
        botocore_exc.ReadTimeoutError,
        botocore_exc.ConnectionClosedError,
    ) as exc:
        raise SourceTransient(f"{where}: {type(exc).__name__}: {exc}") from exc
    except botocore_exc.NoCredentialsError as exc:
        msg = (
            f"aws: no AWS credentials found to read {where}. Set aws.profile or "
            "aws.credentials-block in the stack, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."
        )
        raise SecretAccessError(msg) from exc
    if "SecretString" in response and response["SecretString"] is not None:
        value = str(response["SecretString"])
    else:
        binary = response.get("SecretBinary")
        if binary is None:
            raise SourceNotFound(f"{where} has no value")
        try:
            value = bytes(binary).decode("utf-8")
        except UnicodeDecodeError:
            msg = f"aws: {where} holds binary data that is not UTF-8 text"
            raise SecretAccessError(msg) from None
    if lookup.json_key is not None:
        # The whole JSON was fetched: mask all of it (and its long fields), not one field.
        register_secret_value(value, json_fields=True)
    arn = str(response.get("ARN") or lookup.name)
    where_read = arn + (f"#{lookup.json_key}" if lookup.json_key else "")
    return Fetched(value=_select(value, lookup, where), where=where_read)
