"""AWS credentials from the stack's ``[aws]`` section, and botocore sessions that share models.

The block returned by `aws_credentials` carries *where* to connect (region, named profile,
endpoint, role to assume) and never access keys unless you pass them explicitly: on EC2, ECS
or a laptop with a profile, boto3's own credential chain finds them at run time.

`share_service_models` gives a new botocore (or aiobotocore) session the process's one model
loader, so that the sessions oxeo-flows opens (one per Dask cluster and per TLS secret store)
parse each AWS service model once per process, not once per session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows.errors import ConfigError

if TYPE_CHECKING:
    from prefect_aws import AwsCredentials

    from oxeo_flows.stack import Stack

__all__ = ["aws_credentials", "share_service_models"]

_LOADER: dict[str, Any] = {}

_ALLOWED = frozenset(
    {
        "region_name",
        "profile_name",
        "endpoint_url",
        "assume_role_arn",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    }
)


def aws_credentials(*, stack: Stack | str | None = None, **overrides: Any) -> AwsCredentials:
    """Build a `prefect_aws.AwsCredentials` block from the stack's ``aws`` section.

    Args:
        stack: The stack to read (default: the active stack, see `load_stack`).
        **overrides: Values that win over the stack: ``region_name``, ``profile_name``,
            ``endpoint_url``, ``assume_role_arn``, and, only if you really must store keys in
            the block, ``aws_access_key_id`` / ``aws_secret_access_key`` /
            ``aws_session_token``.

    Returns:
        An unsaved `AwsCredentials` block. No keys are stored unless given as overrides.

    Raises:
        ConfigError: An unknown override, or an invalid endpoint or role ARN.
        MissingExtraError: ``prefect-aws`` is not installed (``pip install 'oxeo-flows[aws]'``).

    Example:
        ```python
        from oxeo_flows import aws_credentials

        creds = aws_credentials(region_name="eu-west-1")
        s3 = creds.get_client("s3")
        ```
    """
    unknown = sorted(set(overrides) - _ALLOWED)
    if unknown:
        msg = (
            f"aws_credentials() got unknown argument(s) {unknown}; "
            f"valid ones are {sorted(_ALLOWED)}"
        )
        raise ConfigError(msg)
    from oxeo_flows.stack import resolve_stack

    stack = resolve_stack(stack)
    section = stack.aws
    region = overrides.get("region_name", section.region)
    profile = overrides.get("profile_name", section.profile)
    endpoint = overrides.get("endpoint_url", section.endpoint_url)
    role = overrides.get("assume_role_arn", section.assume_role_arn)
    if "region_name" in overrides and region is not None:
        from oxeo_flows.network import check_aws_region

        try:
            check_aws_region(str(region))
        except ValueError as exc:
            msg = f"region_name argument: {exc}"
            raise ConfigError(msg) from None
    if endpoint is not None and not str(endpoint).startswith(("http://", "https://")):
        where = (
            "endpoint_url argument"
            if "endpoint_url" in overrides
            else stack.describe("aws", "endpoint_url")
        )
        msg = f"{where}: {endpoint!r} is not a URL; use e.g. 'https://s3.eu-west-1.amazonaws.com'"
        raise ConfigError(msg)
    if role is not None and not str(role).startswith("arn:aws"):
        where = (
            "assume_role_arn argument"
            if "assume_role_arn" in overrides
            else stack.describe("aws", "assume_role_arn")
        )
        msg = f"{where}: {role!r} is not a role ARN (arn:aws:iam::<account>:role/<name>)"
        raise ConfigError(msg)
    prefect_aws = require("prefect_aws", "aws")
    kwargs: dict[str, Any] = {
        "region_name": region,
        "profile_name": profile,
        "assume_role_arn": role,
        "aws_client_parameters": prefect_aws.AwsClientParameters(endpoint_url=endpoint),
    }
    for key in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
        if overrides.get(key) is not None:
            kwargs[key] = overrides[key]
    creds: AwsCredentials = prefect_aws.AwsCredentials(**kwargs)
    return creds


def share_service_models(session: Any) -> Any:
    """Make ``session`` (botocore / aiobotocore) read service models through one loader.

    A fresh session parses a service's model on its first client (EC2's: 0.1–0.15 s); with
    the process's one loader only the first session of the process does. The loader's data
    is read-only, and the same for every session of a process.

    Returns:
        ``session``.
    """
    loader = _LOADER.setdefault("loader", session.get_component("data_loader"))
    if loader is not session.get_component("data_loader"):
        session.register_component("data_loader", loader)
    return session
