"""Save Prefect blocks idempotently.

`ensure_block` reads the saved block of the same type and name, compares every field (nested
blocks and secret values included), and writes only when something differs. The result says
``created``, ``updated`` or ``unchanged`` and lists the changed fields; secret values are never
shown in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from oxeo_flows.errors import BlockError, BlockNotFoundError, ConfigError

if TYPE_CHECKING:
    from prefect.blocks.core import Block

__all__ = ["BlockResult", "block_document_id", "block_reference", "ensure_block", "load_block"]

_MASK = "**********"


@dataclass(frozen=True)
class BlockResult:
    """What `ensure_block` did (or, with ``dry_run``, would do).

    Attributes:
        name: The block document's name.
        block_type: The block type slug, e.g. ``s3-bucket``.
        action: ``created``, ``updated`` or ``unchanged``.
        changes: Dotted field path to ``(old, new)``; secret values are masked.
        dry_run: True when nothing was written.
    """

    name: str
    block_type: str
    action: Literal["created", "updated", "unchanged"]
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def slug(self) -> str:
        """``<block type>/<name>``, as used by ``Block.load`` and pull steps."""
        return f"{self.block_type}/{self.name}"


def _plain(value: Any) -> Any:
    """Turn a block (or model) into comparable plain data; secrets stay comparable by value."""
    from pydantic import BaseModel, SecretBytes, SecretStr

    if isinstance(value, BaseModel):
        out = {}
        for key in type(value).model_fields:
            if key.startswith("_") or key in {"block_type_slug"}:
                continue
            out[key] = _plain(getattr(value, key))
        return out
    if isinstance(value, SecretStr | SecretBytes):
        return ("secret", value.get_secret_value())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _public(value: Any) -> Any:
    """Like `_plain`, with the values of secret fields left out (they are stored encrypted)."""
    plain = _plain(value)

    def strip(item: Any) -> Any:
        if isinstance(item, tuple) and len(item) == 2 and item[0] == "secret":
            return None
        if isinstance(item, dict):
            return {k: strip(v) for k, v in item.items()}
        if isinstance(item, list):
            return [strip(v) for v in item]
        return item

    return strip(plain)


def _shown(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "secret":
        return _MASK
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    return value


def _diff(old: Any, new: Any, path: str, out: dict[str, tuple[Any, Any]]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _diff(old.get(key), new.get(key), f"{path}.{key}" if path else key, out)
        return
    if old != new:
        out[path or "(block)"] = (_shown(old), _shown(new))


def _check_name(name: str) -> None:
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name or ""):
        msg = (
            f"block name {name!r} is invalid: use lowercase letters, digits and '-' "
            "(e.g. 'oxeo-code')"
        )
        raise ConfigError(msg)


def ensure_block(block: Block, name: str, *, dry_run: bool = False) -> BlockResult:
    """Save ``block`` as ``name`` unless an identical block is already saved.

    Args:
        block: The block to save (e.g. from `s3_bucket` or `aws_credentials`).
        name: The block document name (lowercase letters, digits, ``-``).
        dry_run: Compare only; write nothing.

    Returns:
        A `BlockResult`: ``created``, ``updated`` (with the changed fields) or ``unchanged``
        (nothing written).

    Raises:
        ConfigError: An invalid name.
        BlockError: The Prefect API could not be read or written.

    Example:
        ```python
        from oxeo_flows import ensure_block, s3_bucket

        result = ensure_block(s3_bucket(), "oxeo-code")
        print(result.action, result.changes)
        ```
    """
    _check_name(name)
    from prefect.blocks.core import Block as _Block

    if not isinstance(block, _Block):
        msg = (
            f"ensure_block needs a Prefect block instance (e.g. s3_bucket(), aws_credentials() "
            f"or prefect.blocks.system.Secret(value=...)), got {type(block).__name__}"
        )
        raise ConfigError(msg)
    cls = type(block)
    slug = cls.get_block_type_slug()
    from oxeo_flows._redact import refuse_loaded_secrets

    # Secret fields (SecretStr) are the place for secrets; any other field is stored readable.
    refuse_loaded_secrets(_public(block), where=f"block {slug}/{name}")
    try:
        existing = _load(cls, name)
    except BlockError:
        raise
    except Exception as exc:
        msg = f"Cannot read block '{slug}/{name}' from the Prefect API: {exc}"
        raise BlockError(msg) from exc
    new = _plain(block)
    if existing is None:
        changes: dict[str, tuple[Any, Any]] = {}
        _diff({}, new, "", changes)
        action: Literal["created", "updated", "unchanged"] = "created"
    else:
        changes = {}
        _diff(_plain(existing), new, "", changes)
        action = "updated" if changes else "unchanged"
    if action != "unchanged" and not dry_run:
        try:
            block.save(name, overwrite=True)
        except Exception as exc:
            msg = f"Cannot save block '{slug}/{name}': {exc}"
            raise BlockError(msg) from exc
    elif action == "unchanged":
        # Let callers use the block as a saved one (e.g. Flow.from_source + deploy).
        block._block_document_name = name
        if existing is not None:
            block._block_document_id = existing._block_document_id
            block._is_anonymous = False
    return BlockResult(name=name, block_type=slug, action=action, changes=changes, dry_run=dry_run)


def _load(cls: type[Block], name: str) -> Block | None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_block_document_by_name(name, block_type_slug=cls.get_block_type_slug())
        except ObjectNotFound:
            return None
    loaded: Any = cls.load(name, _sync=True)  # type: ignore[call-arg]
    return cast("Block", loaded)


# ----------------------------------------------------------------------------- lookup


def block_document_id(slug: str, name: str, *, hint: str = "", client: Any = None) -> str:
    """The id of the saved block ``<slug>/<name>``: the one block lookup of oxeo-flows.

    Args:
        slug: Block type slug, e.g. ``gcp-credentials``.
        name: Block document name.
        hint: How to create the block, appended to the not-found message.
        client: An open sync Prefect client to reuse (default: a new one).

    Returns:
        The block document id.

    Raises:
        BlockNotFoundError: The block does not exist (the message says how to save it).
        BlockError: The Prefect API could not be read.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        if client is not None:
            document = client.read_block_document_by_name(name, block_type_slug=slug)
        else:
            with get_client(sync_client=True) as own:
                document = own.read_block_document_by_name(name, block_type_slug=slug)
    except ObjectNotFound:
        msg = f"no block '{slug}/{name}' is saved in the Prefect API" + (
            f"; {hint}" if hint else ""
        )
        raise BlockNotFoundError(msg) from None
    except Exception as exc:
        msg = f"cannot read block '{slug}/{name}' from the Prefect API: {type(exc).__name__}: {exc}"
        raise BlockError(msg) from exc
    return str(document.id)


def block_reference(block_id: str) -> dict[str, Any]:
    """``{"$ref": {"block_document_id": ...}}``: how pools and deployments reference a block."""
    return {"$ref": {"block_document_id": str(block_id)}}


def load_block(cls: type[Block], name: str, *, hint: str = "") -> Block:
    """Load the saved block ``name`` of type ``cls``, or raise `BlockError` saying how to save it.

    Args:
        cls: The block class, e.g. ``prefect_aws.AwsCredentials``.
        name: Block document name.
        hint: How to create the block, appended to the not-found message.

    Returns:
        The loaded block.

    Raises:
        BlockError: The block does not exist, or the Prefect API could not be read.
    """
    slug = cls.get_block_type_slug()
    try:
        loaded = _load(cls, name)
    except Exception as exc:
        msg = f"cannot read block '{slug}/{name}' from the Prefect API: {type(exc).__name__}: {exc}"
        raise BlockError(msg) from exc
    if loaded is None:
        msg = f"no block '{slug}/{name}' is saved in the Prefect API" + (
            f"; {hint}" if hint else ""
        )
        raise BlockNotFoundError(msg)
    return loaded
