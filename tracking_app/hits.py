"""What a request asks the event writer to record (a `Hit`) and what it answers (`Outcome`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

KINDS = ("open", "click", "unsubscribe")


@dataclass(slots=True)
class Hit:
    kind: str  # open | click | unsubscribe
    email_id: int
    link_position: int | None
    method: str
    user_agent: str | None
    # Full client address: used by the network rules, never stored (only ip_network is).
    client_ip: IPv4Address | IPv6Address | None
    ip_network: str | None
    occurred_at: datetime


@dataclass(slots=True, frozen=True)
class Outcome:
    """`recorded` is False when the email (or the clicked link) does not exist: nothing was
    written and the request gets 404."""

    recorded: bool
    redirect_url: str | None = None
    machine_reason: str | None = None


NOT_FOUND = Outcome(recorded=False)
