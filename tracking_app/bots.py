"""Tells machine-made opens and clicks (mail-privacy proxies, security scanners, repeats) from
human ones, by the rules in bot_rules.json. The rules are data: see docs/tracking.md."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from tracking_app.client_ip import IPAddress

RULES_PATH = Path(__file__).with_name("bot_rules.json")
_CACHE_SIZE = 8192
_ZERO = timedelta(0)


@dataclass(frozen=True)
class PatternRule:
    reason: str
    kinds: frozenset[str]
    regex: re.Pattern[str]


@dataclass(frozen=True)
class NetworkRule:
    reason: str
    kinds: frozenset[str]
    # (IP version, first address, last address) as integers: a compare per range, no parsing.
    ranges: tuple[tuple[int, int, int], ...]

    def matches(self, address: IPAddress) -> bool:
        value = int(address)
        return any(v == address.version and lo <= value <= hi for v, lo, hi in self.ranges)


@dataclass(frozen=True)
class MethodRule:
    reason: str
    kinds: frozenset[str]
    methods: frozenset[str]


@dataclass(frozen=True)
class WindowRule:
    """A hit within `window` of something (delivery, an earlier hit) is machine-made."""

    reason: str
    kinds: frozenset[str]
    window: timedelta


@dataclass(frozen=True)
class KindsRule:
    reason: str
    kinds: frozenset[str]


@dataclass(frozen=True)
class BotRules:
    user_agents: tuple[PatternRule, ...]
    networks: tuple[NetworkRule, ...]
    methods: tuple[MethodRule, ...]
    missing_user_agent: KindsRule | None
    soon_after_delivery: tuple[WindowRule, ...]
    repeat: WindowRule | None
    # User agents and addresses repeat a lot: their verdicts are looked up once.
    _ua_verdicts: dict[tuple[str, str], str | None] = field(
        default_factory=dict, compare=False, repr=False
    )
    _network_verdicts: dict[tuple[str, IPAddress], str | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def repeat_window(self) -> timedelta:
        return self.repeat.window if self.repeat else timedelta(0)

    def user_agent_reason(self, kind: str, user_agent: str) -> str | None:
        key = (kind, user_agent)
        try:
            return self._ua_verdicts[key]
        except KeyError:
            pass
        verdict = next(
            (r.reason for r in self.user_agents if kind in r.kinds and r.regex.search(user_agent)),
            None,
        )
        return _remember(self._ua_verdicts, key, verdict)

    def network_reason(self, kind: str, address: IPAddress) -> str | None:
        key = (kind, address)
        try:
            return self._network_verdicts[key]
        except KeyError:
            pass
        verdict = next(
            (n.reason for n in self.networks if kind in n.kinds and n.matches(address)), None
        )
        return _remember(self._network_verdicts, key, verdict)

    def request_reason(
        self, kind: str, method: str, user_agent: str | None, client_ip: IPAddress | None
    ) -> str | None:
        """The first of the rules that need only the request (user agent, network, method,
        missing user agent) that calls this hit machine-made; the delivery-time and repeat
        rules come after these."""
        if user_agent:
            reason = self.user_agent_reason(kind, user_agent)
            if reason:
                return reason
        if client_ip is not None:
            reason = self.network_reason(kind, client_ip)
            if reason:
                return reason
        for m in self.methods:
            if kind in m.kinds and method in m.methods:
                return m.reason
        if not user_agent and self.missing_user_agent and kind in self.missing_user_agent.kinds:
            return self.missing_user_agent.reason
        return None

    def machine_reason(
        self,
        *,
        kind: str,
        method: str,
        user_agent: str | None,
        client_ip: IPAddress | None,
        occurred_at: datetime,
        sent_at: datetime | None,
        last_seen_at: datetime | None,
    ) -> str | None:
        """The first rule that calls this hit machine-made, or None for a human hit.
        `last_seen_at`: the latest earlier hit of the same email, kind, link and network (a
        later one, that another process committed first, makes this one no repeat: it is the
        first of the two, and the repair flags the later one, tracking_app/repeats.py)."""
        reason = self.request_reason(kind, method, user_agent, client_ip)
        if reason:
            return reason
        if sent_at is not None:
            since_delivery = occurred_at - as_utc(sent_at)
            for d in self.soon_after_delivery:
                if kind in d.kinds and since_delivery <= d.window:
                    return d.reason
        if (self.repeat and last_seen_at is not None and kind in self.repeat.kinds
                and _ZERO <= occurred_at - as_utc(last_seen_at) <= self.repeat.window):
            return self.repeat.reason
        return None


def _remember(cache: dict[Any, str | None], key: Any, verdict: str | None) -> str | None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = verdict
    return verdict


def as_utc(ts: datetime) -> datetime:
    """A stored timestamp as an aware one: SQLite hands them back without a zone (they are
    stored as UTC); PostgreSQL's timestamptz already has one."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _kinds(rule: dict[str, Any]) -> frozenset[str]:
    return frozenset(rule.get("kinds", ("open", "click")))


def _ranges(cidrs: list[str]) -> tuple[tuple[int, int, int], ...]:
    nets = [ip_network(c, strict=False) for c in cidrs]
    return tuple(
        (n.version, int(n.network_address), int(n.broadcast_address)) for n in nets
    )


def parse_rules(data: dict[str, Any]) -> BotRules:
    """Rules from the JSON shape of bot_rules.json (raises ValueError on a bad rule)."""
    try:
        missing = data.get("missing_user_agent")
        repeat = data.get("repeat")
        return BotRules(
            user_agents=tuple(
                PatternRule(r["reason"], _kinds(r), re.compile(r["pattern"], re.IGNORECASE))
                for r in data.get("user_agents", [])
            ),
            networks=tuple(
                NetworkRule(r["reason"], _kinds(r), _ranges(r["cidrs"]))
                for r in data.get("networks", [])
            ),
            methods=tuple(
                MethodRule(r["reason"], _kinds(r), frozenset(m.upper() for m in r["methods"]))
                for r in data.get("methods", [])
            ),
            missing_user_agent=KindsRule(missing["reason"], _kinds(missing)) if missing else None,
            soon_after_delivery=tuple(
                WindowRule(r["reason"], _kinds(r), timedelta(seconds=float(r["seconds"])))
                for r in data.get("soon_after_delivery", [])
            ),
            repeat=WindowRule(repeat["reason"], _kinds(repeat),
                              timedelta(seconds=float(repeat["window_s"]))) if repeat else None,
        )
    except (KeyError, TypeError, re.error) as exc:
        raise ValueError(f"bad bot rule: {exc!r}") from exc


def load_rules(path: Path | None = None) -> BotRules:
    return parse_rules(json.loads((path or RULES_PATH).read_text(encoding="utf-8")))
