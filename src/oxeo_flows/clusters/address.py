"""The ``address`` backend: an existing scheduler, reached within a deadline.

`distributed` bounds the TCP connect with its connect timeout, but not the handshake that
follows: a peer that accepts the connection and never answers (a half-open firewall, a
load balancer without a backend, a TLS port spoken to in plaintext) hangs the client forever.
`probe_scheduler` runs the connect, the TLS handshake and an ``identity`` round trip under one
deadline, in a thread it can abandon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oxeo_flows.clusters._deadline import run_in_thread, scheduler_timeout_message
from oxeo_flows.clusters._hosts import is_internal, parse_address
from oxeo_flows.errors import ClusterStartTimeout

if TYPE_CHECKING:
    from distributed.security import Security

__all__ = ["is_internal", "parse_address", "probe_scheduler"]


def probe_scheduler(
    address: str,
    *,
    timeout: float,
    security: Security | None = None,
    hint: str = "",
) -> dict[str, Any]:
    """Connect to a scheduler and ask for its identity, all within ``timeout`` seconds.

    Args:
        address: The scheduler address.
        timeout: Deadline in seconds for connect + TLS handshake + reply.
        security: TLS material for ``tls://`` addresses.
        hint: Extra lines for the timeout message (network, subnet, checklist).

    Returns:
        The scheduler's identity (a dict with at least ``type`` and ``id``).

    Raises:
        ClusterStartTimeout: The scheduler did not answer in time, or refused the connection
            until the deadline.
    """
    from oxeo_flows._extras import require

    # Import before the clock starts: importing distributed takes about a second.
    require("distributed.comm", "dask")

    async def _probe() -> dict[str, Any]:
        import asyncio

        from distributed.comm.core import connect

        sec: Any = security
        args: dict[str, Any] = sec.get_connection_args("client") if sec is not None else {}
        dial: Any = connect
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        last: BaseException | None = None
        while True:
            remaining = end - loop.time()
            if remaining <= 0:
                raise TimeoutError(str(last) if last else "deadline reached")
            try:
                comm = await asyncio.wait_for(dial(address, timeout=remaining, **args), remaining)
            except (OSError, TimeoutError) as exc:
                # Refused / unreachable: retry until the deadline (the scheduler may be starting).
                last = exc
                await asyncio.sleep(min(0.2, max(0.0, end - loop.time())))
                continue
            try:
                await asyncio.wait_for(
                    comm.write({"op": "identity", "reply": True}), end - loop.time()
                )
                reply = await asyncio.wait_for(comm.read(), end - loop.time())
            except (OSError, TimeoutError) as exc:
                last = exc
                comm.abort()
                if isinstance(exc, TimeoutError):
                    raise
                await asyncio.sleep(min(0.2, max(0.0, end - loop.time())))
                continue
            comm.abort()
            if not isinstance(reply, dict):
                msg = f"unexpected reply {reply!r}"
                raise OSError(msg)
            return reply

    def _run() -> dict[str, Any]:
        import asyncio

        return asyncio.run(_probe())

    try:
        return run_in_thread(_run, timeout=timeout + 0.5, name="oxeo-dask-probe")
    except (TimeoutError, OSError) as exc:
        cause = str(exc) or type(exc).__name__
        msg = scheduler_timeout_message(address, timeout=timeout, cause=cause, hint=hint)
        raise ClusterStartTimeout(msg) from exc
