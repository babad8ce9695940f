"""The two ways a batch of opens and clicks is recorded on PostgreSQL decide alike: the one
statement of `AsyncPgStore` (verdicts completed and rows appended in PostgreSQL) and the
SQLAlchemy transaction of `ThreadStore` (reads, `plan_batch` in Python, then the rows, as on
SQLite). Same batches, same database, one store after the other: same outcomes, same rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from models import EmailEvent, EmailLink
from models.db import get_engine, session_scope
from tests.tracking_app.conftest import make_outreach
from tracking_app.bots import RULES_PATH, load_rules, parse_rules
from tracking_app.client_ip import truncated_network
from tracking_app.hits import Hit, Outcome
from tracking_app.stores import AsyncPgStore, Earlier, ThreadStore, record_batch_sql

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari"


def _hit(kind: str, email_id: int, at: datetime, *, position: int | None = None,
         ua: str | None = BROWSER, ip: str = "203.0.113.9", method: str = "GET") -> Hit:
    address = ip_address(ip)
    return Hit(kind, email_id, position, method, ua, address, truncated_network(address), at)


async def _record(store: Any, batches: Sequence[tuple[list[Hit], Earlier]]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    try:
        for hits, earlier in batches:
            outcomes += (await store.write(hits, earlier)).outcomes
    finally:
        await store.close()
    return outcomes


def _stored(db_url: str) -> list[tuple[Any, ...]]:
    with session_scope(db_url) as s:
        return [tuple(r) for r in s.execute(
            select(EmailEvent.email_id, EmailEvent.kind, EmailEvent.link_position,
                   EmailEvent.occurred_at, EmailEvent.method, EmailEvent.user_agent,
                   EmailEvent.ip_network, EmailEvent.is_machine, EmailEvent.machine_reason)
            .order_by(EmailEvent.id))]


def _via_both_stores(db_url: str, batches: list[tuple[list[Hit], Earlier]]) -> list[Outcome]:
    """The outcomes of `batches` recorded by the one-statement store, after checking that the
    SQLAlchemy store (on an emptied events table) answers and writes the same."""
    rules = load_rules()
    via_statement = asyncio.run(_record(AsyncPgStore(db_url, rules), batches))
    rows_statement = _stored(db_url)
    with session_scope(db_url) as s:
        s.execute(delete(EmailEvent))
    via_sqlalchemy = asyncio.run(_record(ThreadStore(get_engine(db_url), rules), batches))
    assert via_statement == via_sqlalchemy
    assert rows_statement == _stored(db_url)
    return via_statement


def test_the_one_statement_store_decides_and_writes_like_the_sqlalchemy_store(
    pg_clean: str,
) -> None:
    o = make_outreach(pg_clean)
    e0, e1, e2 = o.email_ids
    with session_scope(pg_clean) as s:
        s.execute(update(EmailLink).where(EmailLink.email_id == e2, EmailLink.position == 0)
                  .values(url="javascript:alert(1)"))
    missing = max(o.email_ids + o.unsent_email_ids) + 100
    now = datetime.now(UTC)
    first = [
        _hit("open", e0, now - timedelta(seconds=100)),
        _hit("open", e0, now - timedelta(seconds=70)),  # repeat of the one before, same batch
        _hit("open", e0, now - timedelta(seconds=100), ip="198.51.100.1", method="HEAD"),
        _hit("open", e0, now - timedelta(seconds=99), ip="198.51.100.2", ua=None),
        _hit("open", e0, now - timedelta(seconds=98), ip="198.51.100.3", ua="curl/8.5.0"),
        _hit("open", e0, now - timedelta(seconds=97), ip="17.58.63.201"),  # Apple's network
        _hit("click", o.just_sent_email_id, now, position=0),  # just delivered: a scanner
        _hit("click", o.just_sent_email_id, now, position=1, ua="curl/8.5.0"),
        _hit("click", e1, now - timedelta(seconds=90), position=0),
        _hit("click", e1, now - timedelta(seconds=90), position=7),  # no such link: 404
        _hit("click", e1, now - timedelta(seconds=90), position=None),  # 404
        _hit("open", missing, now - timedelta(seconds=90)),  # no such email: 404
        _hit("click", e2, now - timedelta(seconds=90), position=0),  # not redirectable: 404
        _hit("click", e2, now - timedelta(seconds=90), position=1, ip="2001:db8::1"),
    ]
    second = [
        _hit("open", e0, now - timedelta(seconds=20)),  # stored one 50 s before: repeat
        _hit("open", e0, now, ip="198.51.100.1"),  # stored HEAD 100 s before: human
        _hit("click", e1, now - timedelta(seconds=30), position=0),  # stored 60 s before
        _hit("click", e1, now - timedelta(seconds=29), position=1),  # other link: human
        _hit("open", e2, now - timedelta(seconds=10), ip="2001:db8::2"),  # same /48: human open
        _hit("open", e1, now, ip="192.0.2.1"),  # a batch in flight had it 60 s before
        _hit("open", e1, now, ip="198.18.7.1"),  # ... and 61 s before
    ]
    second_earlier = [None] * 5 + [now - timedelta(seconds=60), now - timedelta(seconds=61)]
    via_statement = _via_both_stores(pg_clean, [(first, None), (second, second_earlier)])
    assert [(o.recorded, o.machine_reason) for o in via_statement] == [
        (True, None), (True, "repeat"), (True, "head_request"), (True, "no_user_agent"),
        (True, "scanner_http_library"), (True, "apple_mpp"), (True, "click_soon_after_delivery"),
        (True, "scanner_http_library"), (True, None), (False, None), (False, None), (False, None),
        (False, None), (True, None),
        (True, "repeat"), (True, None), (True, "repeat"), (True, None), (True, None),
        (True, "repeat"), (True, None),
    ]
    assert via_statement[8].redirect_url == "https://booknex.example/demo"


@pytest.mark.parametrize("drop", [(), ("repeat",), ("soon_after_delivery",),
                                  ("repeat", "soon_after_delivery")])
def test_rules_without_the_delivery_or_repeat_rule_still_make_a_valid_statement(
    pg_clean: str, drop: tuple[str, ...]
) -> None:
    data = json.loads(RULES_PATH.read_text(encoding="utf-8"))
    for key in drop:
        del data[key]
    rules = parse_rules(data)
    o = make_outreach(pg_clean)
    now = datetime.now(UTC)
    hits = [_hit("open", o.email_ids[0], now), _hit("open", o.email_ids[0], now),
            _hit("click", o.just_sent_email_id, now, position=0)]
    outcomes = asyncio.run(_record(AsyncPgStore(pg_clean, rules), [(hits, None)]))
    repeat = None if "repeat" in drop else "repeat"
    delivery = None if "soon_after_delivery" in drop else "click_soon_after_delivery"
    assert [o.machine_reason for o in outcomes] == [None, repeat, delivery]


def test_hits_without_a_client_network_repeat_only_each_other(pg_clean: str) -> None:
    """The probe seeks the network as the index stores it (coalesced): a hit whose client
    address is unknown repeats an earlier one without a network, never one with a network,
    and a hit with a network never repeats one without. Both stores agree."""
    o = make_outreach(pg_clean)
    e0 = o.email_ids[0]
    now = datetime.now(UTC)

    def no_network(at: datetime) -> Hit:
        return Hit("open", e0, None, "GET", BROWSER, None, None, at)

    first = [no_network(now - timedelta(seconds=50))]
    second = [no_network(now - timedelta(seconds=20)),
              _hit("open", e0, now - timedelta(seconds=19)),
              no_network(now + timedelta(seconds=200))]
    via_statement = _via_both_stores(pg_clean, [(first, None), (second, None)])
    assert [o.machine_reason for o in via_statement] == [None, "repeat", None, None]


def test_the_repeat_probe_seeks_email_kind_and_network_in_the_index(pg_clean: str) -> None:
    """The plan PostgreSQL keeps for the prepared statement (the generic one) finds a hit's
    earlier events by email, kind and client network in ix_email_events_repeat_key, so a hit
    reads only its own client's events, not every event of its email in the window."""
    rules = load_rules()
    sql = record_batch_sql(rules).replace("%s", "$1")
    engine = get_engine(pg_clean)
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cur:
            cur.execute("SET plan_cache_mode = force_generic_plan")
            cur.execute(f"PREPARE record_batch(text) AS {sql}")
            cur.execute("EXPLAIN (FORMAT JSON) EXECUTE record_batch('[]')")
            plan = cur.fetchone()[0]  # type: ignore[index]
    probes = [node for node in _plan_nodes(plan[0]["Plan"])
              if node.get("Relation Name") == "email_events" and "Index Name" in node]
    assert [p["Index Name"] for p in probes] == ["ix_email_events_repeat_key"]
    condition = probes[0]["Index Cond"]
    assert "email_id =" in condition and "kind" in condition
    assert "COALESCE(ip_network" in condition and "occurred_at >=" in condition


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]
