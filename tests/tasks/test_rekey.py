"""Re-keying stored leads with today's key rules, on PostgreSQL and SQLite: stale keys are
rewritten, current ones untouched, each chunk stamps the next key version under the load lock,
and a duplicate the dedupe step missed against a stale lead is matched afterwards."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import select, update

from models import Lead
from models.db import get_engine, session_scope
from tasks.dedupe import dedupe_frame, match_existing
from tasks.keys import KEY_COLUMNS, add_keys
from tasks.load import Seen, load_leads, lock_loads, seen_leads
from tasks.rekey import KEY_SOURCES, current_keys, rekey_leads


def keys_of(fields: dict[str, Any]) -> dict[str, Any]:
    """The keys `add_keys` computes for a row of these staging fields."""
    row = add_keys(pd.DataFrame([{c: fields.get(c) for c in KEY_SOURCES}])).iloc[0]
    return {c: row[c] for c in KEY_COLUMNS}


def add_lead(url: str, keys: dict[str, Any] | None = None, key_version: int | None = None,
             **fields: Any) -> int:
    """A lead as an older release stored it: these fields, and these keys (default: today's)."""
    stored = keys_of(fields) if keys is None else {c: keys.get(c) for c in KEY_COLUMNS}
    with session_scope(url) as s:
        lead = Lead(source="apollo", sources=["apollo"], key_version=key_version,
                    created_at=datetime(2024, 1, 2, tzinfo=UTC),
                    updated_at=datetime(2024, 1, 2, tzinfo=UTC), **fields, **stored)
        s.add(lead)
        s.flush()
        return lead.id


def stored_keys(url: str, lead_id: int) -> dict[str, Any]:
    with session_scope(url) as s:
        lead = s.get_one(Lead, lead_id)
        return {c: getattr(lead, c) for c in KEY_COLUMNS}


def snapshot(url: str) -> dict[int, dict[str, Any]]:
    """Every column of every lead, by id."""
    table = Lead.__table__
    with get_engine(url).connect() as conn:
        return {row.id: row._asdict() for row in conn.execute(select(table))}


# A German business stored under the old address rule (the postcode as its street line), a UK
# one whose 00-prefixed number got no phone key, a lead from before keys were stored, a lead
# whose ISP mailbox was its "domain", and a lead whose keys are current.
BERLIN = {"company_name": "Café Mitte GmbH", "address": "Friedrichstraße 43, 10117 Berlin",
          "city": "Berlin", "country": "DE", "website": "https://cafe-mitte.de"}
LONDON = {"company_name": "Soho Nails Ltd", "phone": "0044 20 7946 0958", "city": "London",
          "country": "GB"}
UNKEYED = {"company_name": "Nova Spa", "email": "Hello@NovaSpa.com", "city": "Austin, TX",
           "address": "12 Congress Ave"}
ISP_MAIL = {"company_name": "Glen Hair", "email": "glenhair@btinternet.com", "city": "Leeds"}
CURRENT = {"company_name": "Bella Salon", "website": "https://bella-salon.com",
           "phone": "(512) 555-0142", "city": "Austin", "address": "1 Main St"}


def stale_leads(url: str) -> dict[str, int]:
    return {
        "berlin": add_lead(url, {**keys_of(BERLIN), "address_key": "10117 berlin"}, **BERLIN),
        "london": add_lead(url, {**keys_of(LONDON), "phone_e164": None}, **LONDON),
        "current": add_lead(url, key_version=7, **CURRENT),
        "unkeyed": add_lead(url, {}, **UNKEYED),
        "isp": add_lead(url, {**keys_of(ISP_MAIL), "domain": "btinternet.com"}, **ISP_MAIL),
    }


def test_rekey_rewrites_stale_keys_to_what_add_keys_computes_and_leaves_current_ones(
    db_url: str,
) -> None:
    ids = stale_leads(db_url)
    before = snapshot(db_url)

    result = rekey_leads(db_url, batch_size=2)

    assert (result.scanned, result.rekeyed) == (5, 4)
    for name, fields in (("berlin", BERLIN), ("london", LONDON), ("unkeyed", UNKEYED),
                         ("isp", ISP_MAIL)):
        assert stored_keys(db_url, ids[name]) == keys_of(fields), name
    assert stored_keys(db_url, ids["berlin"])["address_key"] == "43 friedrichstrasse"
    assert stored_keys(db_url, ids["london"])["phone_e164"] == "+442079460958"
    assert stored_keys(db_url, ids["isp"])["domain"] is None
    after = snapshot(db_url)
    assert after[ids["current"]] == before[ids["current"]]  # not written: same updated_at
    for name in ("berlin", "london", "unkeyed", "isp"):
        assert after[ids[name]]["updated_at"] != before[ids[name]]["updated_at"], name
    assert [(c.lead_id, [k for k, _, _ in c.changed]) for c in result.examples] == [
        (ids["berlin"], ["address_key"]), (ids["london"], ["phone_e164"]),
        (ids["unkeyed"], [c for c in KEY_COLUMNS if c != "phone_e164"]),  # it has no phone
        (ids["isp"], ["domain"])]
    assert rekey_leads(db_url).rekeyed == 0  # a second run finds nothing to do


def test_each_chunk_stamps_its_leads_with_a_key_version_above_every_earlier_one(
    db_url: str,
) -> None:
    ids = stale_leads(db_url)  # the current lead carries key version 7, from a past load

    rekey_leads(db_url, batch_size=2)  # chunks: berlin+london, current+unkeyed, isp

    with session_scope(db_url) as s:
        versions = {name: s.get_one(Lead, lead_id).key_version for name, lead_id in ids.items()}
        assert seen_leads(s) == Seen(ids["isp"], 10)
    assert versions == {"berlin": 8, "london": 8, "current": 7, "unkeyed": 9, "isp": 10}


def test_a_dry_run_reports_the_changes_and_writes_nothing(db_url: str) -> None:
    ids = stale_leads(db_url)
    before = snapshot(db_url)

    result = rekey_leads(db_url, batch_size=2, dry_run=True)

    assert (result.scanned, result.rekeyed) == (5, 4)
    assert result.examples[0].lead_id == ids["berlin"]
    assert result.examples[0].changed == [("address_key", "10117 berlin", "43 friedrichstrasse")]
    assert snapshot(db_url) == before


def test_a_key_a_merged_row_gave_is_kept_where_the_leads_own_fields_give_none(
    db_url: str,
) -> None:
    # The lead's own website is a Facebook page and its email a gmail address: no domain of
    # their own. The domain came from another source's row merged into it; it still names the
    # business, so it stays. A domain today's rules refuse (the ISP mailbox) goes.
    fields = {"company_name": "Bella Salon", "website": "https://www.facebook.com/bellasalon",
              "email": "bellasalon@gmail.com", "city": "Austin"}
    learned = add_lead(db_url, {**keys_of(fields), "domain": "bella-salon.com"}, **fields)
    isp = add_lead(db_url, {**keys_of(ISP_MAIL), "domain": "btinternet.com"}, **ISP_MAIL)
    before = snapshot(db_url)

    result = rekey_leads(db_url)

    assert (result.scanned, result.rekeyed) == (2, 1)
    assert snapshot(db_url)[learned] == before[learned]
    assert stored_keys(db_url, isp)["domain"] is None


def test_current_keys_of_leads_with_every_key_current_are_their_keys() -> None:
    rows = [BERLIN, LONDON, UNKEYED, ISP_MAIL, CURRENT]
    leads = pd.DataFrame([{**{c: r.get(c) for c in KEY_SOURCES}, **keys_of(r)} for r in rows])
    assert current_keys(leads).to_dict("records") == [keys_of(r) for r in rows]


# A second listing of the German business: same street and number, written number-last as
# most European sources do, under the same name without its legal form.
BERLIN_AGAIN = {"source": "google_places", "source_record_id": "g1",
                "company_name": "Cafe Mitte", "address": "Friedrichstraße 43",
                "city": "Berlin", "country": "DE", "quality_score": 50, "tier": "warm",
                "score_breakdown": {}, "booking_tools": [], "raw": {}}


def test_a_duplicate_the_dedupe_step_missed_against_a_stale_lead_is_matched_after_rekey(
    db_url: str,
) -> None:
    stale = add_lead(db_url, {**keys_of(BERLIN), "address_key": "10117 berlin"},
                     **{**BERLIN, "website": None})
    row = pd.DataFrame([BERLIN_AGAIN])
    with get_engine(db_url).connect() as conn:
        missed = dedupe_frame(conn, row)
    assert missed.existing_lead_id.isna().all()  # "10117 berlin" vs "43 friedrichstrasse"

    rekey_leads(db_url)

    with get_engine(db_url).connect() as conn:
        found = dedupe_frame(conn, row)
    assert found.existing_lead_id.tolist() == [stale]
    assert found.reason.tolist() == ["name+address"]


def test_a_load_whose_dedupe_read_the_database_before_a_rekey_matches_the_new_keys(
    db_url: str,
) -> None:
    """A run's dedupe step reads the database; `leadflow rekey` then fixes the stale lead's
    address key; the run's load re-matches its row against it (no duplicate)."""
    stale = add_lead(db_url, {**keys_of(BERLIN), "address_key": "10117 berlin"},
                     **{**BERLIN, "website": None})
    row = pd.DataFrame([BERLIN_AGAIN])
    with get_engine(db_url).connect() as conn:
        seen = seen_leads(conn)
        ours = dedupe_frame(conn, row).apply(row)
    assert ours["existing_lead_id"].isna().all()

    assert rekey_leads(db_url).rekeyed == 1

    with session_scope(db_url) as s:
        result = load_leads(s, ours, None, rematch=match_existing, seen=seen)
    assert result.lead_ids == [stale] and result.inserted == 0
    with session_scope(db_url) as s:
        assert s.get_one(Lead, stale).sources == ["apollo", "google_places"]


def test_a_rekey_waits_for_a_running_load_and_keys_what_it_committed(db_url: str) -> None:
    """A load holds the load lock and merges a phone into a lead with a stale name key; the
    rekey started meanwhile reads the lead only once that load has committed, so it keeps
    the phone key the merge gave (read before, the lead had none: it would write none)."""
    lead = add_lead(db_url, {**keys_of(LONDON), "phone_e164": None, "name_key": "soho nails ltd"},
                    **{**LONDON, "phone": None})
    done: list[int] = []
    with session_scope(db_url) as load:
        lock_loads(load)
        load.execute(update(Lead).where(Lead.id == lead).values(
            phone=LONDON["phone"], phone_e164="+442079460958", key_version=1))
        rekey = threading.Thread(target=lambda: done.append(rekey_leads(db_url).rekeyed))
        rekey.start()
        time.sleep(1.0)
        assert done == [] and rekey.is_alive()  # waiting for the load's lock
    rekey.join(timeout=30)
    assert done == [1]
    assert stored_keys(db_url, lead) == keys_of(LONDON)
    assert stored_keys(db_url, lead)["phone_e164"] == "+442079460958"
