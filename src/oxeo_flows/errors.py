"""The oxeo-flows exception hierarchy.

Every error this library raises on purpose is an `OxeoFlowsError`. Errors from Prefect,
Google Cloud, AWS or Dask are translated at the adapter that talks to them (with
``raise ... from exc``), so callers only ever need to catch these types::

    OxeoFlowsError
    ├── ConfigError (also ValueError)          bad stack, spec or argument; names key and fix
    ├── MissingExtraError (also ImportError)   an optional dependency is not installed
    ├── SecretError
    │   ├── SecretNotFoundError (also KeyError)   no source has the secret
    │   ├── SecretAccessError                     a source refused or failed permanently
    │   └── SecretIntegrityError                  the payload failed its checksum
    ├── ClusterError
    │   └── ClusterStartTimeout (also TimeoutError)  a Dask cluster was not reachable in time
    ├── PoolError                              a work pool could not be read or written
    ├── BlockError                             a Prefect block could not be read or saved
    │   └── BlockNotFoundError                 no block of that type and name is saved
    ├── StorageError
    │   └── SyncError                          a code sync failed part-way (carries the report)
    ├── DeployError                            a deployment could not be built or registered
    └── ApplyError                             `oxeo-flows apply` failed part-way (carries the plan)

Messages are written for the person who has to fix the problem: they say what was wrong,
where it came from, and what to do. They never contain secret values.
"""

from __future__ import annotations

__all__ = [
    "ApplyError",
    "BlockError",
    "BlockNotFoundError",
    "ClusterError",
    "ClusterStartTimeout",
    "ConfigError",
    "DeployError",
    "MissingExtraError",
    "OxeoFlowsError",
    "PoolError",
    "SecretAccessError",
    "SecretError",
    "SecretIntegrityError",
    "SecretNotFoundError",
    "StorageError",
    "SyncError",
]


class OxeoFlowsError(Exception):
    """Base class of every error raised by oxeo-flows."""


class ConfigError(OxeoFlowsError, ValueError):
    """Invalid configuration: a stack file, an environment variable or a factory argument.

    The message names where the bad value came from (file, stack, key or environment
    variable) and how to fix it.
    """


class MissingExtraError(OxeoFlowsError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, message: str, *, extra: str, module: str) -> None:
        super().__init__(message)
        self.extra = extra
        self.module = module
        # ImportError's own attribute, so tools that inspect it see the right module.
        self.name = module


class SecretError(OxeoFlowsError):
    """Base class of secret loading errors. Messages never contain secret values."""


class SecretNotFoundError(SecretError, KeyError):
    """No configured source has the secret. The message lists every source tried."""

    def __str__(self) -> str:
        # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class SecretAccessError(SecretError):
    """A source refused access or failed permanently; the chain stops there."""


class SecretIntegrityError(SecretError):
    """A secret payload failed its integrity check (for example a CRC32C mismatch)."""


class ClusterError(OxeoFlowsError):
    """A Dask cluster could not be created, reached or cleaned up."""


class ClusterStartTimeout(ClusterError, TimeoutError):
    """A Dask cluster or scheduler was not reachable before its start deadline.

    Any VM that was created for it has been deleted before this is raised.
    """


class PoolError(OxeoFlowsError):
    """A Prefect work pool could not be read, created or updated."""


class BlockError(OxeoFlowsError):
    """A Prefect block could not be loaded or saved."""


class BlockNotFoundError(BlockError):
    """No block of the type and name asked for is saved in the Prefect API."""


class StorageError(OxeoFlowsError):
    """Code storage (for example S3) could not be read or written."""


class SyncError(StorageError):
    """A code sync failed part-way.

    Attributes:
        report: What was uploaded, skipped and deleted before the failure.
    """

    def __init__(self, message: str, *, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class DeployError(OxeoFlowsError):
    """A deployment could not be built or registered."""


class ApplyError(OxeoFlowsError):
    """Applying a stack failed part-way.

    Attributes:
        plan: The plan, with each item marked as applied or not.
    """

    def __init__(self, message: str, *, plan: object = None) -> None:
        super().__init__(message)
        self.plan = plan
