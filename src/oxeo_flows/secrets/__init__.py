"""Secrets: one call for GCP Secret Manager, AWS Secrets Manager, Prefect blocks and env.

- `load_secret` / `aload_secret`: a `SecretStr` from the stack's ordered sources, or from an
  explicit reference (``gcp://``, ``aws://``, ``prefect://``, ``env://``); cached, retried,
  single-flight (see `oxeo_flows.secrets._core` for the exact semantics).
- `ssh_key_file` / `git_ssh_env`: an SSH key from a secret on disk only while needed.
- `gcp_credentials_from_secret` / `google_credentials_from_secret`: Google credentials from
  service-account JSON in a secret, never written to disk.

Every loaded value is registered with `oxeo_flows._redact`, and a logging filter on the
``prefect`` loggers masks it if user code logs it.
"""

from __future__ import annotations

from oxeo_flows.secrets._base import SecretRef, parse_secret_ref
from oxeo_flows.secrets._core import (
    LoadedSecret,
    aload_secret,
    aresolve_secret,
    clear_secret_cache,
    load_secret,
    resolve_secret,
)
from oxeo_flows.secrets._logging import SecretMaskingFilter, install_log_filter
from oxeo_flows.secrets.credentials import (
    gcp_credentials_from_secret,
    google_credentials_from_secret,
)
from oxeo_flows.secrets.env import env_var_name
from oxeo_flows.secrets.ssh import HostKeyChecking, git_ssh_env, ssh_key_file

__all__ = [
    "HostKeyChecking",
    "LoadedSecret",
    "SecretMaskingFilter",
    "SecretRef",
    "aload_secret",
    "aresolve_secret",
    "clear_secret_cache",
    "env_var_name",
    "gcp_credentials_from_secret",
    "git_ssh_env",
    "google_credentials_from_secret",
    "install_log_filter",
    "load_secret",
    "parse_secret_ref",
    "resolve_secret",
    "ssh_key_file",
]
