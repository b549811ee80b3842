"""VPC firewall rules evaluated the way GCP evaluates them, for the Dask VMs.

For one connection (a direction, a peer range, the target VMs, a port range) the rules that
count are those of the network, in that direction, enabled, and applying to the target (no
target tags or service accounts, or one the VMs carry). Of the rules that match the peer and a
port, the one with the lowest priority number decides; at equal priority a deny beats an allow.
When no rule matches, the implied rules decide: ingress denied, egress allowed.

An allow rule only counts for a peer range when its source (or destination) ranges contain the
whole range; a deny counts as soon as it overlaps it (some of the range is refused).
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oxeo_flows.doctor.report import Findings

__all__ = ["Decision", "Peer", "Rule", "Target", "blocked", "evaluate", "parse_rules"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Ports = tuple[int, int]
_EVERYWHERE = (ipaddress.ip_network("0.0.0.0/0"),)
_TCP = {"tcp", "6", "all"}


@dataclass(frozen=True)
class Target:
    """The instances a connection goes to (ingress) or comes from (egress)."""

    tags: frozenset[str]
    service_account: str | None

    def describe(self) -> str:
        """``tags a, b; service account x``."""
        tags = ", ".join(sorted(self.tags)) or "none"
        return f"tags {tags}; service account {self.service_account or 'unknown'}"


@dataclass(frozen=True)
class Peer:
    """The other end: a range and, for other VMs of the network, their tags / account."""

    cidr: Network
    tags: frozenset[str] = frozenset()
    service_account: str | None = None


@dataclass(frozen=True)
class Rule:
    """One firewall rule, as read from ``firewalls.list``."""

    name: str
    network: str
    direction: str
    priority: int
    deny: bool
    disabled: bool
    ranges: tuple[Network, ...]
    source_tags: frozenset[str]
    source_accounts: frozenset[str]
    target_tags: frozenset[str]
    target_accounts: frozenset[str]
    tcp_ports: tuple[Ports, ...]

    def applies_to(self, target: Target | None) -> bool:
        """GCP's target rule: no targets = every instance; else a tag or account it carries."""
        if target is None:
            return True
        if self.target_tags:
            return bool(self.target_tags & target.tags)
        if self.target_accounts:
            return target.service_account in self.target_accounts
        return True

    def matches(self, peer: Peer) -> bool:
        """Whether the rule's source (ingress) / destination (egress) side matches ``peer``."""
        if peer.tags & self.source_tags:
            return True
        if peer.service_account is not None and peer.service_account in self.source_accounts:
            return True
        ranges = self.ranges or (() if self.source_tags or self.source_accounts else _EVERYWHERE)
        same = [r for r in ranges if r.version == peer.cidr.version]
        if self.deny:
            return any(r.overlaps(peer.cidr) for r in same)
        return any(peer.cidr.subnet_of(r) for r in same)  # type: ignore[arg-type]

    def has_port(self, port: int) -> bool:
        """Whether the rule covers tcp ``port``."""
        return any(lo <= port <= hi for lo, hi in self.tcp_ports)


def _ranges(values: Iterable[Any]) -> tuple[Network, ...]:
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            continue
    return tuple(out)


def _tcp_ports(specs: Iterable[dict[str, Any]]) -> tuple[Ports, ...]:
    out: list[Ports] = []
    for spec in specs:
        if str(spec.get("IPProtocol", "")).lower() not in _TCP:
            continue
        ports = spec.get("ports") or ["0-65535"]
        for text in ports:
            low, _, high = str(text).partition("-")
            try:
                out.append((int(low), int(high or low)))
            except ValueError:
                continue
    return tuple(out)


def parse_rules(items: Iterable[dict[str, Any]], network: str) -> list[Rule]:
    """The rules of ``network`` (by name) from a ``firewalls.list`` response."""
    rules = []
    for item in items:
        if not str(item.get("network", "")).endswith(f"/networks/{network}"):
            continue
        direction = str(item.get("direction", "INGRESS"))
        deny = bool(item.get("denied"))
        rules.append(
            Rule(
                name=str(item.get("name")),
                network=network,
                direction=direction,
                priority=int(item.get("priority", 1000)),
                deny=deny,
                disabled=bool(item.get("disabled", False)),
                ranges=_ranges(
                    item.get("destinationRanges" if direction == "EGRESS" else "sourceRanges", [])
                ),
                source_tags=frozenset(item.get("sourceTags", [])),
                source_accounts=frozenset(item.get("sourceServiceAccounts", [])),
                target_tags=frozenset(item.get("targetTags", [])),
                target_accounts=frozenset(item.get("targetServiceAccounts", [])),
                tcp_ports=_tcp_ports(item.get("denied" if deny else "allowed", [])),
            )
        )
    return rules


@dataclass(frozen=True)
class Decision:
    """The verdict for ports ``low``-``high``: allowed or not, and the rule that decided."""

    low: int
    high: int
    allowed: bool
    rule: Rule | None  # None: the implied rule of the direction

    def ports(self) -> str:
        """``8786`` or ``8786-8787``."""
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"

    def by(self) -> str:
        """Which rule decided, for a message."""
        if self.rule is None:
            return "the implied deny-all ingress rule" if not self.allowed else "the implied rule"
        kind = "deny" if self.rule.deny else "allow"
        return f"{kind} rule {self.rule.name!r} (priority {self.rule.priority})"


def evaluate(
    rules: Sequence[Rule], *, direction: str, peer: Peer, target: Target | None, ports: Ports
) -> list[Decision]:
    """The decisions for every port of ``ports``, merged into runs with the same outcome."""
    live = [
        r
        for r in rules
        if r.direction == direction and not r.disabled and r.applies_to(target) and r.matches(peer)
    ]
    lo, hi = ports
    cuts = {lo, hi + 1}
    for rule in live:
        for a, b in rule.tcp_ports:
            cuts |= {p for p in (a, b + 1) if lo < p <= hi}
    edges = sorted(cuts)
    out: list[Decision] = []
    for start, end in itertools.pairwise(edges):
        candidates = [r for r in live if r.has_port(start)]
        winner = min(candidates, key=lambda r: (r.priority, not r.deny), default=None)
        allowed = (direction == "EGRESS") if winner is None else not winner.deny
        if out and out[-1].allowed == allowed and out[-1].rule == winner:
            out[-1] = Decision(out[-1].low, end - 1, allowed, winner)
        else:
            out.append(Decision(start, end - 1, allowed, winner))
    return out


def blocked(decisions: Sequence[Decision]) -> list[Decision]:
    """The decisions that refuse the connection."""
    return [d for d in decisions if not d.allowed]


def near_misses(
    rules: Sequence[Rule], *, direction: str, peer: Peer, target: Target | None, port: int
) -> list[str]:
    """Allow rules that would admit ``port`` from ``peer`` but are disabled or target others."""
    out = []
    for r in rules:
        if r.direction != direction or r.deny or not r.matches(peer) or not r.has_port(port):
            continue
        if r.disabled:
            out.append(f"{r.name!r} is disabled")
        elif not r.applies_to(target):
            wanted = sorted(r.target_tags) or sorted(r.target_accounts)
            out.append(f"{r.name!r} targets {', '.join(wanted)}, which the Dask VMs do not carry")
    return out


def report_flow(
    out: Findings,
    rules: Sequence[Rule],
    *,
    name: str,
    peer: Peer,
    label: str,
    target: Target | None,
    ports: Ports,
    fix: str,
) -> None:
    """Add one check: are ``ports`` from ``peer`` admitted to ``target``, as GCP decides?"""
    decisions = evaluate(rules, direction="INGRESS", peer=peer, target=target, ports=ports)
    refused = blocked(decisions)
    span = f"tcp {ports[0]}-{ports[1]}"
    to = f"the Dask VMs ({target.describe()})" if target else "the network's instances"
    if not refused:
        deciders = sorted({d.rule.name for d in decisions if d.rule is not None})
        admit = (
            f"rule {deciders[0]!r} admits"
            if len(deciders) == 1
            else f"rules {', '.join(repr(n) for n in deciders)} admit"
        )
        out.add("gcp-network", name, "ok", f"{admit} {span} from {peer.cidr} to {to}")
        return
    first = refused[0]
    why = f"{first.by()} refuses tcp {first.ports()} from {peer.cidr} ({label}) to {to}"
    misses = near_misses(rules, direction="INGRESS", peer=peer, target=target, port=first.low)
    if misses:
        why += "; " + "; ".join(misses)
    if first.rule is not None and first.rule.deny:
        fix = (
            f"narrow or remove the deny rule {first.rule.name!r}, or admit the traffic with a "
            f"higher priority: {fix} --priority {max(first.rule.priority - 1, 0)}"
        )
    out.add("gcp-network", name, "fail", why, fix)
