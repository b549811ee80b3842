"""The ``prefect`` secret source: Prefect ``Secret`` blocks.

A secret named ``github-token`` is the ``Secret`` block document ``github-token`` on the
Prefect API of the current profile (``PREFECT_API_URL``). The value is returned exactly as it
was stored: Prefect's own ``Secret.get()`` json-decodes strings (``"123"`` comes back as the
integer ``123``), so this source reads the block document's raw value instead. Blocks holding
JSON (a dict or list) are returned as JSON text. Blocks have no versions: only ``latest`` is
answered. Without a configured API (``PREFECT_API_URL`` unset) this source has nothing: it does
not start Prefect's temporary server just to look.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from oxeo_flows.errors import SecretAccessError
from oxeo_flows.secrets._base import Fetched, Lookup, SourceNotFound, SourceTransient

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack

__all__: list[str] = []

CACHEABLE = True
_BLOCK_NAME = re.compile(r"^[a-z0-9-]+$")


def identity(lookup: Lookup, stack: Stack) -> Hashable:
    """The API the block is read from."""
    return os.environ.get("PREFECT_API_URL", "")


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    value = PREFECT_API_URL.value()
    return str(value) if value else None


def fetch(lookup: Lookup, stack: Stack) -> Fetched:
    """Read the ``Secret`` block document's raw value."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    name = lookup.name
    if lookup.version != "latest":
        msg = f"Prefect Secret blocks have no versions (asked for version {lookup.version!r})"
        raise SourceNotFound(msg)
    if not _BLOCK_NAME.match(name):
        msg = (
            f"{name!r} is not a valid Prefect block name (lowercase letters, digits and "
            "dashes only), so no Secret block can have it"
        )
        raise SourceNotFound(msg)
    api = _api_url()
    if api is None:
        msg = (
            "no Prefect API is configured (PREFECT_API_URL is not set), so no Secret block "
            "can be read; set it with `prefect config set PREFECT_API_URL=...`"
        )
        raise SourceNotFound(msg)
    where = f"Secret block {name!r} on {api}"
    try:
        with get_client(sync_client=True) as client:
            document = client.read_block_document_by_name(
                name, block_type_slug="secret", include_secrets=True
            )
    except ObjectNotFound:
        raise SourceNotFound(f"no Secret block named {name!r} on {api}") from None
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if status in (408, 429) or status >= 500:
            raise SourceTransient(f"{where}: the API answered HTTP {status}") from exc
        msg = (
            f"prefect: reading {where} was refused with HTTP {status}. Check PREFECT_API_KEY "
            "and that this key may read blocks."
        )
        raise SecretAccessError(msg) from exc
    except httpx.TransportError as exc:
        raise SourceTransient(f"{where}: {type(exc).__name__}: {exc}") from exc
    raw: Any = (document.data or {}).get("value")
    if raw is None:
        msg = f"prefect: {where} has no 'value' field; is it really a Secret block?"
        raise SecretAccessError(msg)
    if hasattr(raw, "get_secret_value"):
        raw = raw.get_secret_value()
    value = raw if isinstance(raw, str) else json.dumps(raw)
    return Fetched(value=value, where=f"Secret block {name!r}")
