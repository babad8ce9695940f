"""The load step on PostgreSQL: inserts, merges into existing leads, and is idempotent."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import func, select

from models import Lead, LeadSourceRecord
from models.db import session_scope
from tasks.batches import start_batch
from tasks.load import Seen, load_leads, seen_leads


def frame(rows: list[dict]) -> pd.DataFrame:
    base = {
        "company_name": None, "email": None, "email_norm": None, "phone": None,
        "phone_e164": None, "website": None, "domain": None, "city": None,
        "quality_score": 50, "tier": "warm", "score_breakdown": {}, "booking_tools": [],
        "raw": {}, "existing_lead_id": pd.NA,
    }
    return pd.DataFrame([{**base, **r} for r in rows])


def count(session, model) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(model))


def test_loading_the_same_batch_twice_creates_no_duplicate(db_url: str) -> None:
    pg_clean = db_url
    rows = frame([
        {"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon",
         "cluster_id": 0, "email": "x@bella.com"},
        {"source": "apollo", "source_record_id": "a2", "company_name": "Nova Spa", "cluster_id": 1},
    ])
    with session_scope(pg_clean) as s:
        batch = start_batch(s, "run-1", "generate", "apollo", "salon", "Austin, TX", 10)
        first = load_leads(s, rows, batch)
    with session_scope(pg_clean) as s:
        second = load_leads(s, rows, batch)  # what a retried task does
    assert (first.inserted, first.merged) == (2, 0)
    assert (second.inserted, second.merged) == (0, 2)
    assert first.lead_ids == second.lead_ids
    with session_scope(pg_clean) as s:
        assert count(s, Lead) == 2
        assert count(s, LeadSourceRecord) == 2



def test_a_retried_load_finds_records_whose_ids_hold_quotes_commas_and_braces(
    db_url: str,
) -> None:
    # External ids come from outside: whatever characters they hold, a retried load must map
    # each record back to its lead (the lookup sends them as one text[] literal on PostgreSQL).
    odd = ['a"1', "b,2", "{c3}", "d\\4", "e 5", "NULL", "é\x1f6", ""]
    rows = frame([{"source": "apollo", "source_record_id": ext, "company_name": f"Biz {i}",
                   "cluster_id": i} for i, ext in enumerate(odd)])
    with session_scope(db_url) as s:
        first = load_leads(s, rows, None)
    with session_scope(db_url) as s:
        second = load_leads(s, rows, None)
    assert (first.inserted, second.inserted, second.merged) == (len(odd), 0, len(odd))
    assert second.lead_ids == first.lead_ids
    with session_scope(db_url) as s:
        assert count(s, Lead) == len(odd)

def test_rows_of_one_cluster_become_one_lead_with_every_source(pg_clean: str) -> None:
    rows = frame([
        {"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon LLC",
         "cluster_id": 7, "quality_score": 80, "tier": "hot"},
        {"source": "google_places", "source_record_id": "g1", "company_name": "Bella Salon",
         "cluster_id": 7, "phone": "(512) 555-0142", "phone_e164": "+15125550142"},
    ])
    with session_scope(pg_clean) as s:
        result = load_leads(s, rows, None)
    assert (result.inserted, result.merged) == (1, 1)
    with session_scope(pg_clean) as s:
        lead = s.scalars(select(Lead)).one()
        assert lead.company_name == "Bella Salon LLC"  # from the best-scored row
        assert lead.phone_e164 == "+15125550142"  # gap filled from the other row
        assert lead.sources == ["apollo", "google_places"]
        assert count(s, LeadSourceRecord) == 2


def test_a_match_merges_into_the_existing_lead_filling_only_empty_fields(pg_clean: str) -> None:
    with session_scope(pg_clean) as s:
        load_leads(s, frame([{"source": "apollo", "source_record_id": "a1",
                              "company_name": "Bella Salon", "cluster_id": 0,
                              "city": "Austin", "quality_score": 40, "tier": "warm"}]), None)
        lead_id = s.scalar(select(Lead.id))
    incoming = frame([{"source": "pdl", "source_record_id": "p9", "company_name": "bella salon",
                       "city": "Dallas", "email": "owner@bella.com", "cluster_id": 0,
                       "existing_lead_id": lead_id, "quality_score": 75, "tier": "hot"}])
    with session_scope(pg_clean) as s:
        result = load_leads(s, incoming, None)
    assert (result.inserted, result.merged) == (0, 1)
    with session_scope(pg_clean) as s:
        lead = s.get_one(Lead, lead_id)
        assert lead.company_name == "Bella Salon"  # kept, not overwritten
        assert lead.city == "Austin"
        assert lead.email == "owner@bella.com"  # filled
        assert (lead.quality_score, lead.tier) == (75, "hot")  # the better score wins
        assert lead.sources == ["apollo", "pdl"]
        assert count(s, Lead) == 1


# --- bulk paths, re-matching inside the lock, JSON columns (PostgreSQL and SQLite) -------------


def keyed(rows: list[dict]) -> pd.DataFrame:
    """A frame as the dedupe step leaves it: staging columns plus the match keys."""
    from tasks.keys import add_keys

    return add_keys(frame(rows))


def test_a_lead_inserted_by_another_run_after_dedupe_is_merged_not_duplicated(
    db_url: str,
) -> None:
    from tasks.dedupe import dedupe_frame, match_existing

    ours = frame([
        {"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon",
         "email": "owner@bella-salon.com", "website": "https://bella-salon.com",
         "city": "Austin"},
        {"source": "apollo", "source_record_id": "a2", "company_name": "Nova Spa",
         "website": "https://novaspa.com", "city": "Austin"},
    ])
    from models.db import get_engine

    with get_engine(db_url).connect() as conn:  # the dedupe step: nothing in the database yet
        seen = seen_leads(conn)
        ours = dedupe_frame(conn, ours).apply(ours)
    assert ours["existing_lead_id"].isna().all()
    other = frame([{"source": "google_places", "source_record_id": "g1",
                    "company_name": "Bella Salon & Spa", "website": "https://bella-salon.com",
                    "city": "Austin", "cluster_id": 0}])
    with session_scope(db_url) as s:  # another run loads the same business meanwhile
        (other_id,) = load_leads(s, keyed(other.to_dict("records")), None).lead_ids
    asked: list[list[str]] = []

    def spy(conn, rows):  # type: ignore[no-untyped-def]
        asked.append(list(rows["source_record_id"]))
        return match_existing(conn, rows)

    with session_scope(db_url) as s:
        result = load_leads(s, ours, None, rematch=spy, seen=seen)
    assert result.lead_ids[0] == other_id
    assert (result.inserted, result.merged) == (1, 1)
    assert asked == [["a1"]]  # only the row sharing a key with the new lead is matched again
    with session_scope(db_url) as s:
        assert count(s, Lead) == 2
        lead = s.get_one(Lead, other_id)
        assert lead.sources == ["apollo", "google_places"]
        assert lead.email == "owner@bella-salon.com"  # gap filled from our row


def test_no_rematch_when_no_lead_was_inserted_since_dedupe(db_url: str) -> None:
    def fail(conn, rows):  # type: ignore[no-untyped-def]
        raise AssertionError("nothing to re-match")

    with session_scope(db_url) as s:
        load_leads(s, keyed([{"source": "pdl", "source_record_id": "p1",
                              "company_name": "Old Barber", "cluster_id": 0}]), None)
    with session_scope(db_url) as s:
        seen = seen_leads(s)
        result = load_leads(s, keyed([{"source": "apollo", "source_record_id": "a1",
                                       "company_name": "New Barber", "cluster_id": 0}]),
                            None, rematch=fail, seen=seen)
    assert result.inserted == 1


def test_only_rows_sharing_a_key_with_a_newer_lead_are_matched_again(db_url: str) -> None:
    """Which rows the load matches again, key kind by key kind: found by a join in
    PostgreSQL, by Python sets on SQLite, with the same answer; a lead whose keys are not
    stored (older rows) is keyed in Python on both."""
    from tasks.dedupe import match_existing

    with session_scope(db_url) as s:
        load_leads(s, keyed([{"source": "pdl", "source_record_id": "old", "cluster_id": 0,
                              "company_name": "Old Nails", "email": "old@nails.com"}]), None)
        seen = seen_leads(s)
    newer = [  # leads another run inserted after our dedupe step read the database
        {"company_name": "Email Co", "email": "e1@mail-co.com", "email_norm": "e1@mail-co.com"},
        {"company_name": "Domain Co", "website": "https://shop2.com"},
        {"company_name": "Phone Co", "phone": "(512) 555-0003"},
        {"company_name": "Street Co", "city": "Austin", "address": "100 Main St"},
        {"company_name": "Bella Salon", "city": "Austin", "address": "12 Oak Ave"},
        {"company_name": "Zed Barber", "city": "Austin", "address": "7 Elm St"},
    ]
    with session_scope(db_url) as s:
        ids = load_leads(s, keyed([{"source": "google_places", "source_record_id": f"g{i}",
                                    "cluster_id": i, **r} for i, r in enumerate(newer)]),
                         None).lead_ids
        # Zed Barber as a lead written before match keys were stored.
        s.execute(Lead.__table__.update().where(Lead.id == ids[5]).values(
            name_key=None, name_block=None, address_key=None))
    ours = {
        "r_email": {"company_name": "Alpha", "email": "e1@mail-co.com",
                    "email_norm": "e1@mail-co.com"},
        "r_domain": {"company_name": "Beta", "website": "http://www.shop2.com/book"},
        "r_phone": {"company_name": "Gamma", "phone": "+1 512-555-0003"},
        "r_address": {"company_name": "Delta", "city": "Austin", "address": "100 Main Street"},
        "r_block_same_number": {"company_name": "Bella Spa", "city": "Austin",
                                "address": "12 Oak Avenue"},
        "r_block_no_number": {"company_name": "Bella Spa", "city": "Austin"},
        "r_block_other_number": {"company_name": "Bella Spa", "city": "Austin",
                                 "address": "99 Oak Avenue"},
        "r_block_other_city": {"company_name": "Bella Spa", "city": "Dallas"},
        "r_unstored_lead": {"company_name": "Zed Barbers", "city": "Austin"},
        "r_nothing": {"company_name": "Omega", "email": "x@omega.com",
                      "email_norm": "x@omega.com", "city": "Austin"},
    }
    rows = keyed([{"source": "apollo", "source_record_id": k, "cluster_id": i, **r}
                  for i, (k, r) in enumerate(ours.items())])
    asked: list[str] = []

    def spy(conn, rows):  # type: ignore[no-untyped-def]
        asked.extend(rows["source_record_id"])
        return match_existing(conn, rows)

    with session_scope(db_url) as s:
        load_leads(s, rows, None, rematch=spy, seen=seen)
    assert sorted(asked) == sorted([
        "r_email", "r_domain", "r_phone", "r_address", "r_block_same_number",
        "r_block_no_number", "r_unstored_lead"])


def test_without_seen_every_new_row_is_matched_again(db_url: str) -> None:
    from tasks.dedupe import match_existing

    with session_scope(db_url) as s:
        (first,) = load_leads(s, keyed([{"source": "pdl", "source_record_id": "p1",
                                         "company_name": "Bella Salon",
                                         "email": "hi@bella-salon.com", "cluster_id": 0}]),
                              None).lead_ids
    with session_scope(db_url) as s:  # dedupe never saw the lead: the rematch finds it
        result = load_leads(s, keyed([{"source": "apollo", "source_record_id": "a1",
                                       "company_name": "Bella", "email": "hi@bella-salon.com",
                                       "cluster_id": 0}]), None, rematch=match_existing)
    assert result.lead_ids == [first]
    assert result.inserted == 0


def test_cluster_zero_is_one_lead(db_url: str) -> None:
    rows = frame([
        {"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon",
         "cluster_id": 0, "quality_score": 60},
        {"source": "pdl", "source_record_id": "p1", "company_name": "Bella Salon LLC",
         "cluster_id": 0, "city": "Austin", "quality_score": 40},
        {"source": "apollo", "source_record_id": "a2", "company_name": "Nova Spa",
         "cluster_id": 2},
    ])
    with session_scope(db_url) as s:
        result = load_leads(s, rows, None)
    assert (result.inserted, result.merged) == (2, 1)
    assert result.lead_ids[0] == result.lead_ids[1] != result.lead_ids[2]
    with session_scope(db_url) as s:
        lead = s.get_one(Lead, result.lead_ids[0])
        assert (lead.company_name, lead.city) == ("Bella Salon", "Austin")
        assert lead.sources == ["apollo", "pdl"]


def test_bulk_insert_maps_every_row_to_its_lead_and_stores_json_and_types(db_url: str) -> None:
    import numpy as np

    n = 300
    rows = frame([
        {"source": "apollo", "source_record_id": f"a{i}", "company_name": f"Shop {i}",
         "cluster_id": i,
         # null patterns vary from row to row (the old ORM path split these into groups)
         "email": f"x{i}@shop{i}.com" if i % 3 else None,
         "city": "Austin" if i % 2 else None,
         "quality_score": float(i % 100), "tier": "warm",
         "booking_tools": ["calendly", "vagaro"] if i % 5 == 0 else [],
         "score_breakdown": {"email": i % 50, "note": "tab\there \\ \"q\"\nline"},
         "has_contact_form": np.bool_(i % 2 == 0) if i % 7 else None,
         "raw": {"id": f"a{i}", "nested": {"list": [1, 2.5, None], "ünï": "çødé"}}}
        for i in range(n)
    ])
    with session_scope(db_url) as s:
        result = load_leads(s, rows, None)
    assert result.inserted == n and len(set(result.lead_ids)) == n
    with session_scope(db_url) as s:
        leads = {lead.id: lead for lead in s.scalars(select(Lead))}
        records = {r.external_id: r for r in s.scalars(select(LeadSourceRecord))}
    for i, lead_id in enumerate(result.lead_ids):
        lead = leads[lead_id]
        assert lead.company_name == f"Shop {i}"
        assert lead.email == (f"x{i}@shop{i}.com" if i % 3 else None)
        assert lead.quality_score == i % 100 and isinstance(lead.quality_score, int)
        assert lead.booking_tools == (["calendly", "vagaro"] if i % 5 == 0 else [])
        assert lead.score_breakdown == {"email": i % 50, "note": "tab\there \\ \"q\"\nline"}
        assert lead.has_contact_form == ((i % 2 == 0) if i % 7 else None)
        assert lead.sources == ["apollo"] and lead.source == "apollo"
        assert lead.status == "new"
        record = records[f"a{i}"]
        assert record.lead_id == lead_id
        assert record.payload == {"id": f"a{i}", "nested": {"list": [1, 2.5, None],
                                                             "ünï": "çødé"}}


def test_text_with_tabs_newlines_and_backslashes_is_stored_exactly(db_url: str) -> None:
    odd = ["tab\there", "new\nline\r", "back\\slash", "\\N", "", "plain"]
    rows = frame([
        {"source": "apollo", "source_record_id": f"id\t{i}\\{text}", "company_name": f"Shop {text}",
         "cluster_id": i, "city": text, "address": f"{i} {text}",
         "raw": {"text": text, "escaped": "\\u0041 \"q\""}}
        for i, text in enumerate(odd)
    ])
    with session_scope(db_url) as s:
        result = load_leads(s, rows, None)
    with session_scope(db_url) as s:
        leads = {lead.id: lead for lead in s.scalars(select(Lead))}
        records = {r.lead_id: r for r in s.scalars(select(LeadSourceRecord))}
    for i, (text, lead_id) in enumerate(zip(odd, result.lead_ids, strict=True)):
        assert leads[lead_id].company_name == f"Shop {text}"
        assert leads[lead_id].city == text  # "" stays "", "\\N" is not NULL
        assert leads[lead_id].address == f"{i} {text}"
        assert records[lead_id].external_id == f"id\t{i}\\{text}"
        assert records[lead_id].payload == {"text": text, "escaped": "\\u0041 \"q\""}


def test_a_frame_sent_to_the_load_worker_loads_the_same(db_url: str) -> None:
    """load_frame keeps what load_leads reads and turns the payloads into JSON text."""
    from tasks.load import RAW_JSON, load_frame

    rows = frame([
        {"source": "apollo", "source_record_id": f"a{i}", "company_name": f"Shop {i}",
         "cluster_id": i // 2, "city": "Austin", "unused": object(),
         "raw": {"id": f"a{i}", "n": [i, 1.5, None], "t": "ç\\\t"} if i % 3 else None}
        for i in range(6)
    ])
    sent = load_frame(rows)
    assert RAW_JSON in sent.columns and "raw" not in sent.columns and "unused" not in sent.columns
    with session_scope(db_url) as s:
        result = load_leads(s, sent, None)
    assert (result.inserted, result.merged) == (3, 3)
    with session_scope(db_url) as s:
        payloads = {r.external_id: r.payload for r in s.scalars(select(LeadSourceRecord))}
        names = sorted(lead.company_name for lead in s.scalars(select(Lead)))
    assert names == ["Shop 0", "Shop 2", "Shop 4"]
    assert payloads == {f"a{i}": ({"id": f"a{i}", "n": [i, 1.5, None], "t": "ç\\\t"}
                                  if i % 3 else {}) for i in range(6)}


def test_merge_into_existing_on_both_databases_keeps_the_better_score(db_url: str) -> None:
    with session_scope(db_url) as s:
        ids = load_leads(s, frame([
            {"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon",
             "cluster_id": 0, "quality_score": 40, "tier": "warm", "city": "Austin",
             "score_breakdown": {"email": 10}},
            {"source": "apollo", "source_record_id": "a2", "company_name": "Nova Spa",
             "cluster_id": 1, "quality_score": 90, "tier": "hot", "booking_tools": ["vagaro"]},
        ]), None).lead_ids
    incoming = frame([
        {"source": "pdl", "source_record_id": "p1", "company_name": "bella", "cluster_id": 0,
         "existing_lead_id": ids[0], "quality_score": 70, "tier": "hot", "city": "Dallas",
         "phone_e164": "+15125550142", "score_breakdown": {"email": 40},
         "booking_tools": ["calendly"]},
        {"source": "google_places", "source_record_id": "g1", "company_name": "nova",
         "cluster_id": 1, "existing_lead_id": ids[1], "quality_score": 20, "tier": "cold",
         "email": "hi@nova.com", "booking_tools": ["square"]},
        {"source": "google_places", "source_record_id": "g2", "company_name": "nova 2",
         "cluster_id": 2, "existing_lead_id": ids[1], "quality_score": 10, "tier": "cold"},
    ])
    with session_scope(db_url) as s:
        result = load_leads(s, incoming, None)
    assert (result.inserted, result.merged, result.lead_ids) == (0, 3, [ids[0], ids[1], ids[1]])
    with session_scope(db_url) as s:
        bella, nova = s.get_one(Lead, ids[0]), s.get_one(Lead, ids[1])
        assert (bella.company_name, bella.city, bella.phone_e164) == (
            "Bella Salon", "Austin", "+15125550142")
        assert (bella.quality_score, bella.tier, bella.score_breakdown) == (
            70, "hot", {"email": 40})
        assert bella.booking_tools == ["calendly"]  # empty list filled
        assert bella.sources == ["apollo", "pdl"]
        assert (nova.quality_score, nova.tier, nova.email) == (90, "hot", "hi@nova.com")
        assert nova.booking_tools == ["vagaro"]  # not overwritten
        assert nova.sources == ["apollo", "google_places"]
        assert count(s, LeadSourceRecord) == 5


def test_a_merge_never_gives_an_email_the_verification_of_another(db_url: str) -> None:
    """email_status and email_confidence describe one address: a merge that keeps the lead's
    unverified address must not label it with the verdict on another row's address (nor a
    new lead's address with the verdict of another row of its cluster)."""
    unverified = {"company_name": "Bella Salon", "email": "info@bella.com",
                  "email_norm": "info@bella.com", "city": "Austin"}
    verified = {"email": "owner@bella.com", "email_norm": "owner@bella.com",
                "email_status": "valid", "email_confidence": 97}
    with session_scope(db_url) as s:
        (old,) = load_leads(s, frame([{"source": "csv", "source_record_id": "c1",
                                       "cluster_id": 0, **unverified}]), None).lead_ids
    incoming = frame([
        {"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon",
         "cluster_id": 0, "existing_lead_id": old, **verified},
        # a new business: its best-scored row has an unverified address, another a verified one
        {"source": "csv", "source_record_id": "c2", "company_name": "Nova Spa",
         "email": "hi@nova.com", "email_norm": "hi@nova.com", "cluster_id": 1,
         "quality_score": 60},
        {"source": "apollo", "source_record_id": "a2", "company_name": "Nova Spa",
         "cluster_id": 1, "quality_score": 55, **verified},
        # the same address, verified by another row: its verdict is kept
        {"source": "apollo", "source_record_id": "a3", "company_name": "Glow Lounge",
         "email": "amy@glow.com", "email_norm": "amy@glow.com", "cluster_id": 3,
         "quality_score": 60},
        {"source": "pdl", "source_record_id": "p3", "company_name": "Glow Lounge",
         "email": "Amy@Glow.com", "email_norm": "amy@glow.com", "email_status": "valid",
         "email_confidence": 90, "cluster_id": 3, "quality_score": 50},
    ])
    with session_scope(db_url) as s:
        lead_ids = load_leads(s, incoming, None).lead_ids
    with session_scope(db_url) as s:
        bella, nova, glow = (s.get_one(Lead, i) for i in (old, lead_ids[1], lead_ids[3]))
        assert (bella.email, bella.email_status, bella.email_confidence) == (
            "info@bella.com", None, None)
        assert (nova.email, nova.email_status, nova.email_confidence) == (
            "hi@nova.com", None, None)
        assert (glow.email, glow.email_status, glow.email_confidence) == (
            "amy@glow.com", "valid", 90)


def test_a_source_record_repeated_within_a_batch_is_recorded_once(db_url: str) -> None:
    rows = frame([
        {"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon",
         "cluster_id": 0},
        {"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon",
         "cluster_id": 0},
    ])
    with session_scope(db_url) as s:
        result = load_leads(s, rows, None)
    assert (result.inserted, result.merged) == (1, 1)
    with session_scope(db_url) as s:
        assert count(s, LeadSourceRecord) == 1
        again = load_leads(s, rows, None)
    assert again.lead_ids == result.lead_ids and again.inserted == 0


# --- loads overlapping the next chunk's dedupe (OrderedLoads) ----------------------------------


def _dedupe(db_url: str, rows: list[dict]) -> tuple[pd.DataFrame, Seen]:
    """The flow's dedupe step on one chunk: the frame, and what it could see of the leads."""
    from models.db import get_engine
    from tasks.dedupe import dedupe_frame

    ours = frame(rows)
    with get_engine(db_url).connect() as conn:
        seen = seen_leads(conn)
        ours = dedupe_frame(conn, ours).apply(ours)
    return ours, seen


def _overlapped_loads(db_url: str, chunks: list[list[dict]]) -> list[dict]:
    """Every chunk deduped before the previous chunk's load committed (the worst case of the
    pipelined flow), then loaded in order through OrderedLoads."""
    from tasks.steps import OrderedLoads, load_chunk_body

    class Done:
        def __init__(self, value: dict) -> None:
            self.value = value

        def result(self) -> dict:
            return self.value

    outcomes: list[dict] = []
    deduped = [_dedupe(db_url, rows) for rows in chunks]  # all before any load

    def submit(f, rejected, seen, previous):  # type: ignore[no-untyped-def]
        return Done(load_chunk_body(db_url, None, f, rejected, seen, previous))

    loads = OrderedLoads(submit, lambda _ctx, outcome: outcomes.append(outcome))
    for f, seen in deduped:
        loads.add(f, [], seen)
    loads.wait()
    return outcomes


def test_the_same_business_in_two_consecutive_overlapped_chunks_is_one_lead(db_url: str) -> None:
    outcomes = _overlapped_loads(db_url, [
        [{"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon",
          "website": "https://bella-salon.com", "city": "Austin"}],
        [{"source": "google_places", "source_record_id": "g1",
          "company_name": "Bella Salon & Spa", "website": "https://www.bella-salon.com/",
          "city": "Austin"}],
    ])
    assert [(o["inserted"], o["merged"]) for o in outcomes] == [(1, 0), (0, 1)]
    with session_scope(db_url) as s:
        assert count(s, Lead) == 1
        assert s.scalars(select(Lead.sources)).one() == ["apollo", "google_places"]


# An existing lead without a website; a chunk that matches it by phone and gives it the domain;
# a chunk that shares only that domain with it.
_NO_WEBSITE = {"source": "pdl", "source_record_id": "p1", "company_name": "Bella Salon",
               "phone": "512-555-0142", "city": "Austin", "cluster_id": 0}
_GIVES_DOMAIN = [{"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon",
                  "phone": "(512) 555-0142", "website": "https://bella-salon.com",
                  "city": "Austin"}]
_SHARES_DOMAIN = [{"source": "google_places", "source_record_id": "g1",
                   "company_name": "Glow Lounge", "website": "https://bella-salon.com/book",
                   "city": "Austin"}]


def test_a_key_filled_by_the_previous_overlapped_load_is_matched(db_url: str) -> None:
    with session_scope(db_url) as s:
        (old,) = load_leads(s, keyed([_NO_WEBSITE]), None).lead_ids
    # the second chunk is deduped before the first one's load committed
    outcomes = _overlapped_loads(db_url, [_GIVES_DOMAIN, _SHARES_DOMAIN])
    assert outcomes[0]["rekeyed_lead_ids"] == [old]
    assert [(o["inserted"], o["merged"]) for o in outcomes] == [(0, 1), (0, 1)]
    with session_scope(db_url) as s:
        assert count(s, Lead) == 1
        assert s.get_one(Lead, old).sources == ["apollo", "google_places", "pdl"]


def test_a_key_filled_two_loads_before_an_overlapped_chunk_is_matched(db_url: str) -> None:
    """OrderedLoads queues a load behind the running one, so a chunk may be deduped before
    the two loads before it commit: the older one's rekeyed leads are re-matched too."""
    with session_scope(db_url) as s:
        (old,) = load_leads(s, keyed([_NO_WEBSITE]), None).lead_ids
    outcomes = _overlapped_loads(db_url, [
        _GIVES_DOMAIN,
        [{"source": "apollo", "source_record_id": "a2", "company_name": "Nova Spa",
          "city": "Dallas"}],
        _SHARES_DOMAIN,
    ])
    assert [(o["inserted"], o["merged"]) for o in outcomes] == [(0, 1), (1, 0), (0, 1)]
    with session_scope(db_url) as s:
        assert count(s, Lead) == 2
        assert s.get_one(Lead, old).sources == ["apollo", "google_places", "pdl"]


def test_ordered_loads_queue_one_load_behind_the_running_one() -> None:
    from concurrent.futures import Future

    from tasks.steps import OrderedLoads

    futures: list[Future] = []
    calls: list[tuple] = []

    def submit(frame, rejected, seen, previous):  # type: ignore[no-untyped-def]
        calls.append((frame, seen, previous))
        futures.append(Future())
        return futures[-1]

    done: list[str] = []
    loads = OrderedLoads(submit, lambda ctx, _outcome: done.append(ctx))
    loads.add("f1", [], Seen(0, 0), "c1")
    loads.add("f2", [], Seen(1, 0), "c2")  # returns at once: one load queued behind the first
    assert [c[0] for c in calls] == ["f1", "f2"] and calls[1][2] is futures[0]
    futures[0].set_result({"rows": 1})
    loads.add("f3", [], Seen(2, 1), "c3")  # had to wait for load 1 to finish
    assert calls[2][1:] == (Seen(2, 1), futures[1]) and done == ["c1"]
    futures[1].set_result({"rows": 1})
    futures[2].set_result({"rows": 2})
    assert loads.wait() == {"rows": 2}
    assert done == ["c1", "c2", "c3"]


def test_a_key_another_run_filled_after_dedupe_is_matched(db_url: str) -> None:
    """Run A's dedupe step reads the database; run B's load then gives an existing lead the
    domain it lacked; A's row sharing only that domain merges into the lead (no duplicate)."""
    with session_scope(db_url) as s:
        (old,) = load_leads(s, keyed([_NO_WEBSITE]), None).lead_ids
    ours, seen = _dedupe(db_url, _SHARES_DOMAIN)
    assert ours["existing_lead_id"].isna().all()
    other, _ = _dedupe(db_url, _GIVES_DOMAIN)
    with session_scope(db_url) as s:  # run B: its own load, nothing to do with run A
        result = load_leads(s, other, None)
    assert result.rekeyed_lead_ids == [old]
    from tasks.dedupe import match_existing

    with session_scope(db_url) as s:  # run A's load
        result = load_leads(s, ours, None, rematch=match_existing, seen=seen)
    assert result.lead_ids == [old] and result.inserted == 0
    with session_scope(db_url) as s:
        assert count(s, Lead) == 1
        assert s.get_one(Lead, old).sources == ["apollo", "google_places", "pdl"]


def test_a_load_stamps_the_leads_it_rekeys_with_the_next_key_version(db_url: str) -> None:
    with session_scope(db_url) as s:
        (old,) = load_leads(s, keyed([_NO_WEBSITE]), None).lead_ids
        assert seen_leads(s) == Seen(old, 0)
    with session_scope(db_url) as s:  # a merge that only adds a source: no new key
        load_leads(s, keyed([{**_NO_WEBSITE, "source": "apollo", "source_record_id": "a0",
                              "existing_lead_id": old}]), None)
        assert seen_leads(s) == Seen(old, 0)
    with session_scope(db_url) as s:  # gives the lead its domain
        load_leads(s, keyed([{**_GIVES_DOMAIN[0], "cluster_id": 0, "existing_lead_id": old}]),
                   None)
        assert seen_leads(s) == Seen(old, 1)
    with session_scope(db_url) as s:  # gives it an email: the next version
        load_leads(s, keyed([{"source": "google_places", "source_record_id": "g9",
                              "company_name": "Bella Salon", "email": "hi@bella-salon.com",
                              "cluster_id": 0, "existing_lead_id": old}]), None)
        assert seen_leads(s) == Seen(old, 2)
        assert s.get_one(Lead, old).key_version == 2


def test_a_load_waiting_on_another_in_sqlite_sees_its_leads_and_merges(sqlite_url: str) -> None:
    """Load A holds its transaction open; load B of the same rows starts meanwhile. B must wait
    for A's write lock before reading, so it merges instead of inserting the leads again."""
    import threading
    import time

    rows = frame([
        {"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon",
         "cluster_id": 0},
        {"source": "apollo", "source_record_id": "a2", "company_name": "Nova Spa", "cluster_id": 1},
    ])
    results: list[object] = []

    def load_b() -> None:
        with session_scope(sqlite_url) as s:
            results.append(load_leads(s, rows, None))

    with session_scope(sqlite_url) as s:
        first = load_leads(s, rows, None)
        b = threading.Thread(target=load_b)
        b.start()
        time.sleep(0.5)  # B is now running, blocked behind A's uncommitted transaction
    b.join(timeout=30)

    assert first.inserted == 2
    assert results and results[0].inserted == 0  # type: ignore[attr-defined]
    with session_scope(sqlite_url) as s:
        assert s.scalar(select(func.count()).select_from(Lead)) == 2


def test_the_text_array_parameter_is_sent_in_the_connections_encoding() -> None:
    """External ids with non-ASCII characters match on a database that is not UTF-8."""
    import uuid

    import psycopg

    from tasks.load import _TextArray, _TextArrayDumper
    from tests.conftest import PG_ADMIN_URL

    name = f"leadflow_latin1_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                      "TEMPLATE template0")
    try:
        with psycopg.connect(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}") as conn:
            conn.adapters.register_dumper(_TextArray, _TextArrayDumper)
            ids = ["café-1", 'qu"ote', "back\\slash"]
            found = conn.execute("SELECT x FROM unnest(%s::text[]) AS x WHERE x = ANY(%s)",
                                 (ids, _TextArray.of(ids))).fetchall()
            assert [x for (x,) in found] == ids
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
