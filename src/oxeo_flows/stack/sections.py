"""The stack sections other than ``[dask]``: gcp, aws, vertex, storage, docker, secrets, pools."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from oxeo_flows._model import Model
from oxeo_flows.docker_pool import DockerFields
from oxeo_flows.errors import ConfigError
from oxeo_flows.network import (
    AwsNetwork,
    AwsNetworkFields,
    GcpNetwork,
    GcpNetworkFields,
    ServiceAccountEmail,
    Zone,
    check_project_id,
)
from oxeo_flows.vertex import VertexFields

# ----------------------------------------------------------------------------- sections


class GcpEndpoints(Model):
    """``[gcp.endpoints]``: API endpoint overrides (private endpoints, emulators).

    A loopback endpoint (``127.0.0.1:PORT``, ``localhost:PORT``, ``[::1]:PORT``) is dialed in
    plaintext with anonymous credentials; anything else with TLS and normal credentials.

    Attributes:
        secret_manager: ``HOST:PORT`` of Secret Manager (used by the ``gcp`` secret source).
        aiplatform: ``HOST:PORT`` of Vertex AI.
        compute: ``HOST:PORT`` of Compute Engine.
        service_networking: ``HOST:PORT`` of Service Networking.
    """

    secret_manager: str | None = None
    """Secret Manager endpoint (host:port), e.g. a private endpoint or an emulator."""
    aiplatform: str | None = None
    """Vertex AI endpoint override."""
    compute: str | None = None
    """Compute Engine API base URL override (used by `doctor` and `clusters`)."""
    service_networking: str | None = None
    """Service Networking API base URL override (used by `doctor`)."""

    @field_validator("secret_manager", "aiplatform", "compute", "service_networking")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        return None if v is None else check_endpoint(v, schemes=("http", "https"), need_port=False)


class GcpSection(GcpNetworkFields):
    """``[gcp]``: the Google Cloud project and its private network."""

    zone: Zone | None = None
    """Default zone, in `region`, e.g. `europe-west4-a`."""
    service_account: ServiceAccountEmail | None = None
    """Service account email for Vertex jobs and Dask VMs."""
    credentials_block: str | None = None
    """Name of a saved `GcpCredentials` block (default: application default credentials)."""
    endpoints: GcpEndpoints = GcpEndpoints()
    """API endpoint overrides."""

    @model_validator(mode="after")
    def _zone_in_region(self) -> GcpSection:
        if self.zone and self.region and not self.zone.startswith(self.region + "-"):
            msg = f"zone {self.zone!r} is not in region {self.region!r}"
            raise ValueError(msg)
        return self

    def network_spec(self) -> GcpNetwork | None:
        """The `GcpNetwork` this section describes, or None when no network is set."""
        if not self.network:
            return None
        if not self.project:
            msg = f"gcp.network is {self.network!r} but gcp.project is not set"
            raise ConfigError(msg)
        fields = {name: getattr(self, name) for name in GcpNetworkFields.model_fields}
        return GcpNetwork.model_validate(fields)


class AwsSection(AwsNetworkFields):
    """``[aws]``: the AWS account, region and VPC."""

    profile: str | None = None
    """Named profile from `~/.aws/config`."""
    endpoint_url: str | None = None
    """Endpoint URL override (a VPC endpoint, or moto in tests); `AWS_ENDPOINT_URL` also works."""
    assume_role_arn: str | None = None
    """Role to assume for every AWS call."""
    credentials_block: str | None = None
    """Name of a saved `AwsCredentials` block."""

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if "://" not in v:
            msg = (
                f"{v!r} is not an endpoint URL; give the scheme too, e.g. "
                "'https://vpce-0123.secretsmanager.eu-west-1.vpce.amazonaws.com' "
                "or 'http://127.0.0.1:5000' for a local emulator"
            )
            raise ValueError(msg)
        return check_endpoint(v, schemes=("http", "https"), need_port=False)

    @model_validator(mode="after")
    def _network(self) -> AwsSection:
        if (self.vpc or self.subnets or self.security_groups) and not self.region:
            msg = "aws.region is required when a vpc, subnets or security-groups are set"
            raise ValueError(msg)
        return self

    def network_spec(self) -> AwsNetwork | None:
        """The `AwsNetwork` this section describes, or None when no region is set."""
        if not self.region:
            return None
        fields = {name: getattr(self, name) for name in AwsNetworkFields.model_fields}
        return AwsNetwork.model_validate(fields)


class VertexSection(VertexFields):
    """``[vertex]``: defaults for flow runs as Vertex AI custom jobs (see `oxeo_flows.vertex_job`).

    The job settings are `VertexJob`'s (one field set, `oxeo_flows.vertex.VertexFields`).
    ``region``, ``service-account`` and ``credentials-block`` fall back to the ``gcp`` section;
    the network and reserved IP ranges always come from it (``private-network = false`` opts
    out of VPC peering). ``max-run-time-hours`` defaults to 24 (Prefect's own default is 1).
    ``api-key-secret`` names the Secret Manager secret holding the Prefect API key, read at job
    start by ``python -m oxeo_flows.vertex_entrypoint`` instead of travelling in the job spec.
    """

    private_network: bool = True
    """Attach the stack's `gcp.network` (VPC peering); false is an explicit opt-out."""
    credentials_block: str | None = None
    """`GcpCredentials` block the worker uses (default: `gcp.credentials-block`)."""
    work_pool: str | None = None
    """Work pool deployments of this stack use for the `vertex` runner."""


class StorageSection(Model):
    """``[storage]``: where deployment code is stored (S3)."""

    bucket: str | None = None
    """S3 bucket for deployment code."""
    folder: str | None = None
    """Folder (key prefix) in the bucket."""
    block_name: str | None = None
    """Name of the saved `S3Bucket` block (default: `<stack>-code-<folder or bucket>`)."""
    credentials_block: str | None = None
    """Name of the `AwsCredentials` block the storage block uses."""
    delete: bool = True
    """Delete remote files that no longer exist locally when syncing."""
    ignore: tuple[str, ...] = ()
    """Extra ignore patterns (gitignore syntax) for code sync."""
    max_concurrency: int = Field(default=8, ge=1, le=64)
    """Parallel uploads / downloads."""
    image_code_dir: str | None = None
    """The image has the code: the absolute directory inside the flow image that holds this
    project; deployments run from there and nothing is synced (instead of `bucket`)."""

    @field_validator("image_code_dir")
    @classmethod
    def _image_code_dir(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("/") or any(c.isspace() for c in v)):
            msg = (
                f"{v!r} is not an absolute directory in the image (e.g. '/opt/prefect/flows', "
                "where the Dockerfile copies the project)"
            )
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _one_source(self) -> StorageSection:
        if self.bucket and self.image_code_dir:
            msg = (
                "bucket and image-code-dir are both set: deployments either pull the code from "
                "S3 (bucket) or run it from the image (image-code-dir); keep one"
            )
            raise ValueError(msg)
        return self

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str | None) -> str | None:
        from oxeo_flows._checks import check_bucket_name

        return None if v is None else _plain_error(check_bucket_name, v, "bucket")

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: str | None) -> str | None:
        from oxeo_flows._checks import check_folder

        return None if v is None else _plain_error(check_folder, v, "folder")


class DockerSection(DockerFields):
    """``[docker]``: defaults for flow runs as Docker containers (``docker`` work pools).

    The container settings are `DockerJob`'s (one field set,
    `oxeo_flows.docker_pool.DockerFields`); the registry keys describe the
    `DockerRegistryCredentials` block the pool references.
    """

    registry_url: str | None = None
    """Private registry URL."""
    registry_username: str | None = None
    """Registry user name."""
    registry_password_secret: str | None = None
    """Secret (name or reference) holding the registry password."""
    registry_credentials_block: str | None = None
    """Name of the `DockerRegistryCredentials` block."""
    work_pool: str | None = None
    """Work pool deployments of this stack use for the `docker` runner."""


def check_endpoint(value: str, *, schemes: tuple[str, ...], need_port: bool) -> str:
    """Check ``[SCHEME://]HOST[:PORT][/PATH]``; plain ``http://`` only to a loopback host.

    Raises:
        ValueError: The endpoint is malformed, or sends plaintext to another machine.
    """
    from oxeo_flows._loopback import endpoint_host, is_loopback_host

    text = value.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else None
    host = endpoint_host(text) if text else ""
    rest = text.split("://", 1)[-1].split("/", 1)[0]
    port = rest.rsplit(":", 1)[1] if ":" in rest and not rest.endswith("]") else None
    example = "e.g. 'https://secretmanager.googleapis.com' or '127.0.0.1:8085'"
    if not text or any(c.isspace() for c in text) or not host:
        msg = f"{value!r} is not an endpoint; give HOST:PORT or a URL ({example})"
        raise ValueError(msg)
    if scheme is not None and scheme not in schemes:
        allowed = " or ".join(f"{s}://" for s in schemes)
        msg = f"{value!r}: scheme {scheme!r} is not supported; use {allowed}"
        raise ValueError(msg)
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        msg = f"{value!r}: port {port!r} is not a port number 1-65535"
        raise ValueError(msg)
    if need_port and port is None:
        msg = f"{value!r} has no port; give HOST:PORT ({example})"
        raise ValueError(msg)
    if scheme == "http" and not is_loopback_host(host):
        msg = (
            f"{value!r} is plain http:// to {host!r}, which is not this machine: credentials and "
            "secret values would cross the network unencrypted. Use https:// (plain http only "
            "for an emulator on 127.0.0.1 / localhost)"
        )
        raise ValueError(msg)
    return value


def _plain_error(check: Any, value: str, label: str) -> str:
    """Run a check that raises ConfigError; re-raise as ValueError so pydantic reports it."""
    try:
        result: str = check(value, where=label)
    except ConfigError as exc:
        raise ValueError(str(exc).removeprefix(f"{label}: ")) from None
    return result


SecretSourceName = Literal["env", "prefect", "gcp", "aws"]


class SecretsSection(Model):
    """``[secrets]``: where `load_secret` looks, in order, how it retries and how long it caches.

    Attributes:
        sources: Sources asked in order for a plain secret name (``env``, ``prefect``, ``gcp``,
            ``aws``).
        cache_ttl: Seconds a loaded value is reused (0 disables the cache).
        required: Secrets (names or references) that ``oxeo-flows secrets check`` must resolve.
        gcp_project: Project of GCP Secret Manager secrets (default: ``gcp.project``).
        retries: Retries of a transient failure (unavailable, throttled, deadline exceeded).
        retry_initial_delay: First backoff delay in seconds; doubles on each retry.
        retry_max_delay: Upper bound of one backoff delay in seconds.
        timeout: Deadline in seconds of one call to a remote source.
        env_prefix: Prefix of the environment variable a name is read from (``env`` source).
    """

    sources: tuple[SecretSourceName, ...] = ("env", "prefect")
    """Where `load_secret` looks, in order: `env`, `prefect`, `gcp`, `aws`."""
    cache_ttl: float = Field(default=300.0, ge=0)
    """Seconds a loaded secret is cached in the process (0 disables)."""
    required: tuple[str, ...] = ()
    """Secrets that must resolve (`oxeo-flows secrets check`, `doctor`)."""
    gcp_project: str | None = None
    """Project of Secret Manager secrets (default: `gcp.project`)."""
    retries: int = Field(default=3, ge=0, le=10)
    """Retries of transient errors (unavailable, throttling, deadline)."""
    retry_initial_delay: float = Field(default=0.2, ge=0, le=60)
    """First backoff delay in seconds."""
    retry_max_delay: float = Field(default=5.0, ge=0, le=300)
    """Largest backoff delay in seconds."""
    timeout: float = Field(default=30.0, gt=0, le=600)
    """Deadline of one backend call in seconds."""
    env_prefix: str = ""
    """Prefix of environment variable names for the `env` source."""

    @field_validator("sources")
    @classmethod
    def _sources(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            msg = f"secret sources must not repeat: {list(v)}"
            raise ValueError(msg)
        return v

    @field_validator("gcp_project")
    @classmethod
    def _gcp_project(cls, v: str | None) -> str | None:
        return None if v is None else check_project_id(v)

    @field_validator("env_prefix")
    @classmethod
    def _env_prefix(cls, v: str) -> str:
        if v and not all(c.isascii() and (c.isalnum() or c == "_") for c in v):
            msg = f"{v!r} is not an environment variable prefix (use A-Z, 0-9 and _)"
            raise ValueError(msg)
        return v


class _PoolCommon(Model):
    description: str | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    adopt: bool = False


class VertexPoolSection(VertexSection, _PoolCommon):
    """``[pools.<name>]`` with ``type = "vertex-ai"``: the pool's job defaults.

    Layered over ``[vertex]`` (`Stack.pool_settings`); the checks across keys run on the
    layered values, when the stack loads.
    """

    type: Literal["vertex-ai"]

    @model_validator(mode="after")
    def _together(self) -> VertexPoolSection:
        return self  # across keys: checked on the layered settings (Stack._layered_pools)


class DockerPoolSection(DockerSection, _PoolCommon):
    """``[pools.<name>]`` with ``type = "docker"``: the pool's job defaults.

    Layered over ``[docker]`` (`Stack.pool_settings`); the checks across keys run on the
    layered values, when the stack loads.
    """

    type: Literal["docker"]

    @model_validator(mode="after")
    def _consistent(self) -> DockerPoolSection:
        return self  # across keys: checked on the layered settings (Stack._layered_pools)


class ProcessPoolSection(_PoolCommon):
    """``[pools.<name>]`` with ``type = "process"``."""

    type: Literal["process"]
    env: dict[str, str] = {}
    working_dir: str | None = None


PoolSection = Annotated[
    VertexPoolSection | DockerPoolSection | ProcessPoolSection, Field(discriminator="type")
]
