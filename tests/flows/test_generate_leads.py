"""The lead-generation flow end to end on PostgreSQL, against the sandbox as a real HTTP server:
the happy path, idempotent re-runs and retries, source fallback, and fault storms."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow, task
from sqlalchemy import func, select, update

from models import (
    ApiConfig,
    ApiUsage,
    Lead,
    LeadBatch,
    LeadSourceRecord,
    QuarantinedRow,
    WebsiteAnalysis,
)
from models.db import session_scope
from tests.conftest import Sandbox

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture()
def env(sandbox_env: Sandbox, pg_settings: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Settings on the sandbox and the session's PostgreSQL database; fast retries."""
    from leadflow.settings import reset_settings_cache

    for key, value in {
        "LEADFLOW_HTTP_BACKOFF_BASE_S": "0.05",
        "LEADFLOW_HTTP_BACKOFF_MAX_S": "2",
        "LEADFLOW_HUNTER_VERIFY_POLL_S": "0.05",
        "LEADFLOW_BATCH_SIZE": "40",
    }.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    sandbox_env.set_faults({})
    sandbox_env.reset_stats()
    yield pg_settings
    sandbox_env.set_faults({})


def run(**params: Any) -> dict[str, Any]:
    from flows.generate_leads import generate_leads

    defaults: dict[str, Any] = dict(source="apollo", industry="salon", location="TX",
                                    max_results=60, enrich=True, analyse=True)
    return generate_leads(**{**defaults, **params})


def scalar(url: str, stmt: Any) -> Any:
    with session_scope(url) as s:
        return s.scalar(stmt)


def assert_no_duplicate_keys(url: str) -> None:
    with session_scope(url) as s:
        for column in (Lead.email_norm, Lead.domain, Lead.phone_e164):
            dupes = s.execute(
                select(column, func.count()).where(column.is_not(None))
                .group_by(column).having(func.count() > 1)
            ).all()
            assert dupes == [], f"duplicate {column.key}: {dupes[:3]}"


def test_generates_enriches_analyses_scores_and_loads_leads(env: str) -> None:
    summary = run(max_results=60)

    processed = summary["leads_generated"] + summary["leads_merged"] + summary["rows_rejected"]
    assert processed == 60
    # 60 different Apollo records, none fetched twice across chunks or pages.
    assert scalar(env, select(func.count(func.distinct(LeadSourceRecord.external_id)))) == 60
    assert summary["sources_used"] == ["apollo"]
    assert scalar(env, select(func.count()).select_from(Lead)) == summary["leads_generated"]
    with session_scope(env) as s:
        leads = s.scalars(select(Lead)).all()
        assert all(0 <= lead.quality_score <= 100 for lead in leads)
        assert {lead.tier for lead in leads} <= {"hot", "warm", "cold"}
        assert sum(summary["tier_distribution"].values()) == len(leads)
        assert any(lead.email_status == "valid" for lead in leads)  # Hunter found and verified
        assert any(lead.booking_tools for lead in leads)  # websites were analysed
        batch = s.get_one(LeadBatch, summary["batch_id"])
        assert batch.status == "done" and batch.leads_generated == len(leads)
        assert s.scalar(select(func.count()).select_from(WebsiteAnalysis)) > 0
        usage = dict(s.execute(select(ApiUsage.source, func.sum(ApiUsage.units))
                               .group_by(ApiUsage.source)).all())
        assert usage["apollo"] >= 60 and usage["hunter"] > 0
    from prefect.artifacts import Artifact

    for key in ("lead-batch-summary", "lead-batch-validation"):
        artifact = Artifact.get(key)
        assert artifact is not None and artifact.type == "table", key
    assert "leads generated" in str(Artifact.get("lead-batch-summary").data)
    assert "email_format" in str(Artifact.get("lead-batch-validation").data)
    stages = summary["stage_seconds"]
    assert stages["fetch"] > 0 and stages["load"] > 0 and stages["orchestration"] > 0
    assert_no_duplicate_keys(env)


def test_a_rerun_of_the_same_search_creates_no_new_lead(env: str) -> None:
    first = run(max_results=40)
    second = run(max_results=40)

    assert first["leads_generated"] > 0
    assert second["leads_generated"] == 0
    assert second["leads_merged"] == 40
    assert scalar(env, select(func.count()).select_from(Lead)) == first["leads_generated"]
    # The re-run merged into every lead of the first: its scores and tiers are theirs (its
    # records were all seen before, so none of them names the second batch).
    assert second["tier_distribution"] == first["tier_distribution"]
    assert second["avg_score"] == first["avg_score"] is not None


def test_a_rerun_asks_hunter_only_about_what_is_not_verified_yet(
    env: str, sandbox_env: Sandbox
) -> None:
    def hunter_requests() -> int:
        stats = sandbox_env.stats()["targets"].get("hunter", {}).get("statuses", {})
        return sum(stats.values())

    run(max_results=40, analyse=False)
    first = hunter_requests()
    with session_scope(env) as s:
        statuses = dict(s.execute(select(Lead.email_status, func.count())
                                  .group_by(Lead.email_status)).all())
    reusable = statuses.get("valid", 0) + statuses.get("accept_all", 0)
    sandbox_env.reset_stats()

    run(max_results=40, analyse=False)

    assert first > 0 and reusable > 0
    # Leads whose address is verified cost nothing the second time.
    assert hunter_requests() <= first - reusable
    with session_scope(env) as s:
        again = dict(s.execute(select(Lead.email_status, func.count())
                               .group_by(Lead.email_status)).all())
    assert again == statuses


def test_batch_scores_and_tiers_cover_the_leads_it_merged_into(env: str) -> None:
    run(source="apollo", max_results=40)
    second = run(source="google_places", max_results=40)

    with session_scope(env) as s:
        touched = s.scalars(select(Lead).where(Lead.id.in_(
            select(LeadSourceRecord.lead_id)
            .where(LeadSourceRecord.batch_id == second["batch_id"])))).all()
    assert second["leads_merged"] > 0  # Google Places found businesses Apollo had found
    assert sum(second["tier_distribution"].values()) == len(touched)
    assert len(touched) > second["leads_generated"]
    expected = round(sum(lead.quality_score for lead in touched) / len(touched), 1)
    assert second["avg_score"] == pytest.approx(expected, abs=0.051)


def test_falls_back_to_the_next_source_when_one_is_at_its_monthly_limit(env: str) -> None:
    from tasks.usage import ensure_api_configs

    with session_scope(env) as s:
        ensure_api_configs(s)
        s.execute(update(ApiConfig).where(ApiConfig.source == "apollo").values(monthly_limit=0))

    summary = run(max_results=30)

    assert "apollo" not in summary["sources_used"]
    assert summary["sources_used"][0] == "google_places"
    note = next(n for n in summary["notes"] if n.startswith("apollo"))
    assert note.startswith("apollo is at its monthly limit (apollo: ") and " - " not in note
    assert note.endswith("falling back to the next source")
    assert scalar(env, select(func.count()).select_from(Lead)) > 0
    assert scalar(env, select(func.count()).where(ApiUsage.source == "apollo")) == 0


def test_a_source_billed_by_the_page_never_spends_past_its_monthly_limit(env: str) -> None:
    """Apollo bills every record of a page: with 150 records left this month the search's
    first page of 100 is fetched, then the rest in a page of 50 (page 3 of 50: the same records
    a second page of 100 would start with), not a second page of 100; then nothing is left and
    the flow moves on to the next source. Nothing stays reserved."""
    from models import ApiReservation
    from tasks.usage import ensure_api_configs

    with session_scope(env) as s:
        ensure_api_configs(s)
        s.execute(update(ApiConfig).where(ApiConfig.source == "apollo").values(monthly_limit=150))

    summary = run(max_results=300, location="United States", enrich=False, analyse=False)

    billed = scalar(env, select(func.sum(ApiUsage.units)).where(ApiUsage.source == "apollo"))
    assert billed == 150
    assert summary["sources_used"][:2] == ["apollo", "google_places"]
    assert any(note.startswith("apollo is at its monthly limit") for note in summary["notes"])
    assert scalar(env, select(func.count()).select_from(ApiReservation)) == 0


def test_the_last_chunk_of_an_apollo_search_is_not_billed_past_max_results(env: str) -> None:
    """150 leads in chunks of 100: the second chunk resumes after 100 records and wants 50. In
    the cursor's pages of 100 it was billed 100 (50 kept, 50 dropped); in pages of 50 (page 3)
    it is billed the 50 it keeps."""
    summary = run(max_results=150, location="United States", enrich=False, analyse=False)

    assert summary["sources_used"] == ["apollo"]
    assert summary["leads_generated"] + summary["leads_merged"] + summary["rows_rejected"] == 150
    billed = scalar(env, select(func.sum(ApiUsage.units)).where(ApiUsage.source == "apollo"))
    assert billed == 150


def test_the_last_chunk_of_a_pdl_scroll_is_not_billed_past_max_results(
        env: str, sandbox_env: Sandbox) -> None:
    """150 leads from PDL in chunks of whole pages: a scroll keeps its first page size, so the
    first chunk's pages of 100 made the second chunk (50 wanted) fetch a page of 100, billed
    200 for 150. The scroll now takes pages of 75 (dividing 150): two pages, billed 150, what
    the sandbox says it charged (`x-call-credits-spent` is the records returned)."""
    summary = run(source="pdl", max_results=150, location="United States", enrich=False,
                  analyse=False)

    assert summary["sources_used"] == ["pdl"]
    assert summary["leads_generated"] + summary["leads_merged"] + summary["rows_rejected"] == 150
    assert scalar(env, select(func.count(func.distinct(LeadSourceRecord.external_id)))) == 150
    billed = scalar(env, select(func.sum(ApiUsage.units)).where(ApiUsage.source == "pdl"))
    assert billed == 150
    assert scalar(env, select(func.count()).select_from(ApiUsage)
                  .where(ApiUsage.source == "pdl")) == 2  # no more requests than pages of 100
    assert sandbox_env.stats()["targets"]["pdl"]["requests"] == 2


def test_a_source_with_less_than_a_page_left_still_fetches_what_it_can_afford(
        env: str) -> None:
    """PDL bills every record returned and a new scroll sizes its pages for the limit: with
    50 credits left this month a fetch of 50 costs 50, so it is made (one page of 50), not
    refused for being less than a page of 100."""
    from tasks.usage import ensure_api_configs

    with session_scope(env) as s:
        ensure_api_configs(s)
        s.execute(update(ApiConfig).where(ApiConfig.source == "pdl").values(monthly_limit=50))

    summary = run(source="pdl", max_results=50, location="United States", enrich=False,
                  analyse=False)

    assert summary["sources_used"] == ["pdl"]
    assert summary["leads_generated"] + summary["leads_merged"] + summary["rows_rejected"] == 50
    assert scalar(env, select(func.sum(ApiUsage.units)).where(ApiUsage.source == "pdl")) == 50


def test_near_the_limit_a_fetch_reserves_what_its_pages_can_bill_never_more_than_is_left(
        env: str) -> None:
    """Per-record sources near their monthly limit: a new search asks for as many records as
    its (evened) pages can return within what is left; a resumed PDL scroll keeps its page
    size (its token is only valid with it), so with less than one of its pages left it is
    refused before any call; a resumed Apollo search goes on in a page that fits (page 101 of
    pages of 1 is record 101, where page 2 of pages of 100 starts)."""
    from models import ApiReservation
    from tasks.sources import SourceFetchError
    from tasks.steps import fetch_source_chunk, open_batch
    from tasks.usage import ensure_api_configs, remaining_quota

    with session_scope(env) as s:
        ensure_api_configs(s)
        s.execute(update(ApiConfig).where(ApiConfig.source.in_(["pdl", "apollo"]))
                  .values(monthly_limit=350))
    batch = open_batch.fn("test:near-the-limit", "generate", "pdl", None, "United States", 500)

    def billed(source: str) -> int:
        return int(scalar(env, select(func.coalesce(func.sum(ApiUsage.units), 0))
                          .where(ApiUsage.source == source)))

    for source in ("pdl", "apollo"):
        first = fetch_source_chunk.fn(batch, source, None, "United States", None, 100)
        assert len(first.candidates) + len(first.rejected) == 100 and billed(source) == 100
        # 250 left, 300 wanted: 250 in 3 pages would bill 3 x 84 = 252; 249 bill 3 x 83.
        other = fetch_source_chunk.fn(batch, source, None, "United States", None, 300)
        assert len(other.candidates) + len(other.rejected) == 249 and billed(source) == 349
        if source == "pdl":
            # 1 left, and the first scroll resumes in pages of 100: refused, nothing called.
            with pytest.raises(SourceFetchError, match=r"less than one page \(100 records\)"):
                fetch_source_chunk.fn(batch, source, None, "United States", first.next_cursor,
                                      100)
            assert billed(source) == 349
        else:
            last = fetch_source_chunk.fn(batch, source, None, "United States",
                                         first.next_cursor, 100)
            assert len(last.candidates) + len(last.rejected) == 1 and billed(source) == 350
        with session_scope(env) as s:
            assert remaining_quota(s, source) == (1 if source == "pdl" else 0)
    assert scalar(env, select(func.count()).select_from(ApiReservation)) == 0


def test_a_fetch_that_crashes_releases_what_it_reserved(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only API errors: whatever ends a fetch, its reservation is settled at once instead
    of holding the quota for an hour."""
    import tasks.sources
    from models import ApiReservation
    from tasks.steps import fetch_source_chunk
    from tasks.usage import ensure_api_configs, remaining_quota

    with session_scope(env) as s:
        ensure_api_configs(s)
        before = remaining_quota(s, "apollo")

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in the normaliser")

    monkeypatch.setattr(tasks.sources, "fetch_chunk", crash)
    with pytest.raises(RuntimeError, match="bug in the normaliser"):
        fetch_source_chunk.fn(1, "apollo", "salon", "TX", None, 200)
    with session_scope(env) as s:
        assert remaining_quota(s, "apollo") == before
        assert s.scalar(select(func.count()).select_from(ApiReservation)) == 0


def test_a_burst_of_429_and_malformed_responses_is_retried_through(
    env: str, sandbox_env: Sandbox
) -> None:
    sandbox_env.set_faults({
        "apollo": {"sequence": ["429", "malformed", "503"], "retry_after": 1},
        "hunter": {"sequence": ["403", "500"], "retry_after": 1},
    })
    summary = run(max_results=30)

    assert summary["sources_used"] == ["apollo"]
    assert summary["leads_generated"] + summary["leads_merged"] == 30
    statuses = sandbox_env.stats()["targets"]["apollo"]["statuses"]
    assert statuses.get("429") == 1 and statuses.get("503") == 1


def test_a_source_asking_for_a_long_wait_is_left_at_once_not_retried(
    env: str, sandbox_env: Sandbox
) -> None:
    sandbox_env.set_faults({"apollo": {"rate": 1.0, "kinds": ["429"], "retry_after": 120}})

    summary = run(max_results=20)

    # One request: neither the client nor a Prefect task retry comes back before 120 s.
    assert sandbox_env.stats()["targets"]["apollo"]["statuses"] == {"429": 1}
    assert summary["sources_used"][0] == "google_places"
    assert any("server asks to wait 120s" in note for note in summary["notes"])


def test_pages_received_before_a_source_fails_are_kept_and_not_fetched_again(
    env: str, sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.settings import reset_settings_cache

    monkeypatch.setenv("LEADFLOW_BATCH_SIZE", "300")  # three Apollo pages per chunk
    reset_settings_cache()
    sandbox_env.set_faults({"apollo": {"sequence": ["ok", "ok"], "rate": 1.0,
                                       "kinds": ["503"], "retry_after": 0}})

    summary = run(location="United States", max_results=300, enrich=False, analyse=False)

    statuses = sandbox_env.stats()["targets"]["apollo"]["statuses"]
    assert statuses.get("200") == 2  # the two good pages were paid for once, not re-fetched
    with session_scope(env) as s:
        kept = s.scalar(select(func.count()).select_from(LeadSourceRecord).where(
            LeadSourceRecord.batch_id == summary["batch_id"],
            LeadSourceRecord.source == "apollo")) + s.scalar(
            select(func.count()).select_from(QuarantinedRow).where(
                QuarantinedRow.batch_id == summary["batch_id"],
                QuarantinedRow.source == "apollo"))
        billed = s.scalar(select(func.sum(ApiUsage.units)).where(
            ApiUsage.source == "apollo", ApiUsage.batch_id == summary["batch_id"]))
    assert kept == billed == 200
    assert any(n.startswith("apollo failed after 200 records of a chunk") for n in summary["notes"])
    assert summary["sources_used"][:2] == ["apollo", "google_places"]


def test_a_source_that_keeps_failing_is_replaced_by_the_next(
    env: str, sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox_env.set_faults({"apollo": {"rate": 1.0, "kinds": ["503"], "retry_after": 0}})

    summary = run(max_results=20)

    assert "apollo" not in summary["sources_used"]
    assert any(note.startswith("apollo failed") for note in summary["notes"])
    assert summary["leads_generated"] > 0


def test_a_run_where_every_source_fails_fails_and_says_so(
    env: str, sandbox_env: Sandbox
) -> None:
    from tasks.sources import NoSourceAvailable

    sandbox_env.set_faults({source: {"rate": 1.0, "kinds": ["503"], "retry_after": 0}
                            for source in ("apollo", "google_places", "pdl")})

    with pytest.raises(NoSourceAvailable, match="no source could be queried"):
        run(max_results=20)

    with session_scope(env) as s:
        batch = s.scalars(select(LeadBatch).order_by(LeadBatch.id.desc())).first()
        assert batch is not None
        assert (batch.status, batch.sources_used, batch.leads_generated) == ("failed", [], 0)
        failures = [n for n in batch.notes[:-1] if " failed (" in n]
        assert [n.split(" ")[0] for n in failures] == ["apollo", "google_places", "pdl"]
        assert failures[-1].endswith("no source left to try")
        assert batch.notes[-1].startswith("run failed: no source could be queried")
    # The failed run's page shows its batch too (what a failed run loaded stays loaded).
    from prefect.artifacts import Artifact

    artifact = Artifact.get("lead-batch-summary")
    assert artifact is not None and artifact.description is not None
    assert artifact.description.startswith(f"Lead batch {batch.id} (failed)")
    assert "run failed: no source could be queried" in str(artifact.data)


def test_a_failed_run_leaves_no_stage_timing_behind(env: str, sandbox_env: Sandbox) -> None:
    from tasks.sources import NoSourceAvailable
    from tasks.steps import STAGE_INTERVALS

    sandbox_env.set_faults({source: {"rate": 1.0, "kinds": ["503"], "retry_after": 0}
                            for source in ("apollo", "google_places", "pdl")})

    with pytest.raises(NoSourceAvailable):
        run(max_results=20)

    failed = scalar(env, select(func.max(LeadBatch.id)))
    assert failed is not None and failed not in STAGE_INTERVALS


def test_a_run_marks_failed_a_batch_left_running_by_a_dead_run(env: str) -> None:
    from datetime import UTC, datetime, timedelta

    with session_scope(env) as s:
        dead = LeadBatch(run_key="dead", kind="generate", source="apollo", status="running",
                         started_at=datetime.now(UTC) - timedelta(hours=5),
                         heartbeat_at=datetime.now(UTC) - timedelta(hours=3))
        s.add(dead)
        s.flush()
        dead_id = dead.id

    summary = run(max_results=20)

    with session_scope(env) as s:
        swept = s.get_one(LeadBatch, dead_id)
        assert swept.status == "failed"
        assert "no sign of life since" in swept.notes[-1]
        assert s.get_one(LeadBatch, summary["batch_id"]).status == "done"


def test_a_live_run_waiting_on_a_slow_source_is_never_swept_as_dead(
    env: str, sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each Apollo page takes longer than the stale setting: only the run's heartbeat thread
    shows the run alive to sweeps running all along beside it (as other runs' starts do)."""
    from leadflow.settings import reset_settings_cache
    from tasks.stale_batches import sweep_stale_batches

    monkeypatch.setenv("LEADFLOW_BATCH_STALE_AFTER_S", "1.2")
    reset_settings_cache()
    sandbox_env.set_faults({"apollo": {"latency_ms": 1500}})
    swept: list[int] = []
    done = threading.Event()

    def sweeper() -> None:
        while not done.wait(0.2):
            with session_scope(env) as s:
                swept.extend(b.batch_id for b in sweep_stale_batches(s, 1.2))

    thread = threading.Thread(target=sweeper)
    thread.start()
    try:
        summary = run(max_results=50, enrich=False, analyse=False)
    finally:
        done.set()
        thread.join()

    assert summary["leads_generated"] > 0
    assert swept == []
    with session_scope(env) as s:
        batch = s.get_one(LeadBatch, summary["batch_id"])
        assert batch.status == "done"
        assert not any("marked failed" in note for note in batch.notes)


def test_hunter_timeouts_leave_leads_without_email_but_loaded(
    env: str, sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.settings import reset_settings_cache

    monkeypatch.setenv("LEADFLOW_HTTP_TIMEOUT_S", "0.3")
    monkeypatch.setenv("LEADFLOW_HTTP_MAX_ATTEMPTS", "2")
    reset_settings_cache()
    sandbox_env.set_faults({"hunter": {"rate": 1.0, "kinds": ["timeout"]}})

    summary = run(max_results=20)

    assert summary["leads_generated"] + summary["leads_merged"] == 20
    with session_scope(env) as s:
        assert s.scalar(select(func.count()).where(Lead.email_status == "valid")) == 0


def test_a_load_retried_after_its_commit_creates_no_duplicate(env: str) -> None:
    """A lost commit acknowledgement: the first attempt commits, then fails; Prefect retries."""
    from leadflow.settings import get_settings
    from tasks.sources import fetch_chunk
    from tasks.steps import (
        dedupe_chunk,
        load_chunk,
        open_batch,
        score_chunk,
        to_frame,
        validate_chunk,
    )

    attempts: list[int] = []

    @task(retries=2, retry_delay_seconds=0)
    def flaky_load(batch_id: int, frame: Any, rejected: list[Any]) -> dict[str, int]:
        result = load_chunk.fn(batch_id, frame, rejected)
        attempts.append(result["inserted"])
        if len(attempts) == 1:
            raise ConnectionError("connection lost before the commit was acknowledged")
        return result

    @flow
    def load_twice() -> int:
        batch_id = open_batch("test:flaky-load", "generate", "apollo", "salon", "TX", 25)
        chunk = asyncio.run(fetch_chunk("apollo", "salon", "TX", None, 25, get_settings()))
        frame, _ = dedupe_chunk(batch_id, score_chunk(batch_id, to_frame(chunk.candidates)))
        checked = validate_chunk(batch_id, frame)
        flaky_load(batch_id, checked.valid, [])
        return len(checked.valid)

    valid = load_twice()

    assert attempts[0] > 0 and attempts[1] == 0  # the retry merged into what the first wrote
    assert scalar(env, select(func.count()).select_from(Lead)) == attempts[0]
    assert scalar(env, select(func.count()).select_from(LeadSourceRecord)) == valid


def test_two_overlapping_runs_never_create_the_same_lead_twice(env: str) -> None:
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(run(max_results=40, analyse=False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    total_new = sum(r["leads_generated"] for r in results)
    assert scalar(env, select(func.count()).select_from(Lead)) == total_new
    # Both runs saw the same 40 records: each source record maps to exactly one lead.
    assert scalar(env, select(func.count()).select_from(LeadSourceRecord)) == 40
    assert_no_duplicate_keys(env)


def test_a_source_without_an_api_key_is_skipped_for_the_next(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.settings import reset_settings_cache

    monkeypatch.delenv("LEADFLOW_APOLLO_API_KEY")
    reset_settings_cache()

    summary = run(max_results=20)

    assert summary["sources_used"][0] == "google_places"
    assert any("apollo failed" in n and "LEADFLOW_APOLLO_API_KEY" in n for n in summary["notes"])
    assert summary["leads_generated"] > 0


def test_the_flow_refuses_parameters_outside_their_range() -> None:
    from prefect.exceptions import ParameterTypeError

    from flows.generate_leads import generate_leads
    from leadflow.settings import MAX_RESULTS

    with pytest.raises(ParameterTypeError):
        generate_leads.validate_parameters({"max_results": 0})
    with pytest.raises(ParameterTypeError):
        generate_leads.validate_parameters({"max_results": MAX_RESULTS + 1})
    for blank in ({"industry": ""}, {"location": "   "}):
        with pytest.raises(ParameterTypeError):
            generate_leads.validate_parameters(blank)
    generate_leads.validate_parameters({"max_results": 100_000})  # the memory benchmark's
    assert generate_leads.parameters.properties["max_results"]["maximum"] == MAX_RESULTS


def test_enrichment_is_cut_to_what_the_hunter_quota_allows(env: str) -> None:
    from tasks.usage import ensure_api_configs

    with session_scope(env) as s:
        ensure_api_configs(s)
        s.execute(update(ApiConfig).where(ApiConfig.source == "hunter").values(monthly_limit=20))

    summary = run(max_results=30, analyse=False)

    assert any("email enrichment skipped for 20 leads" in n for n in summary["notes"])
    assert summary["leads_generated"] + summary["leads_merged"] == 30  # every lead still loaded
    with session_scope(env) as s:
        searched = s.scalar(select(func.count()).where(ApiUsage.source == "hunter",
                                                       ApiUsage.endpoint == "domain-search"))
    assert searched is not None and searched <= 10


def test_after_a_hunter_quota_429_the_chunks_running_alongside_send_no_new_request(
    env: str, sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three chunks enrich at the same time; the first Hunter answer is the quota 429 (then
    Hunter would answer normally, so a chunk that did not know would go on asking). After it,
    the other chunks only finish the request each had in flight (one each at concurrency 1):
    they check the batch's shared stop before every request, not only at their start."""
    from leadflow.settings import reset_settings_cache

    monkeypatch.setenv("LEADFLOW_PIPELINE_DEPTH", "3")
    monkeypatch.setenv("LEADFLOW_ENRICH_CONCURRENCY", "1")
    reset_settings_cache()
    # Slow answers: the chunks' first requests are all in flight when the 429 comes back.
    sandbox_env.set_faults({"hunter": {"sequence": ["429"], "latency_ms": 400}})

    summary = run(location="United States", max_results=300, analyse=False)  # 3 chunks

    hunter = sandbox_env.stats()["targets"]["hunter"]
    assert hunter["statuses"].get("429") == 1
    assert hunter["requests"] - 1 <= 2, hunter  # after the 429: at most the two in flight
    assert summary["leads_generated"] + summary["leads_merged"] + summary["rows_rejected"] == 300
    stopped = [n for n in summary["notes"] if n.startswith("email enrichment stopped")]
    assert len(stopped) == 1 and "Hunter's monthly quota is used up" in stopped[0]
    assert int(stopped[0].split(": ")[-1].split(" ")[0]) > 200  # leads of all three chunks
    assert not any(n.startswith("email enrichment failed") for n in summary["notes"])


def test_a_hunter_quota_used_up_is_learnt_once_per_run_and_said_in_the_summary(
    env: str, sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hunter's 429 means its monthly quota is used up: the call that got it is recorded with
    the batch, the run's later chunks skip Hunter without a request, every lead is still
    loaded, and the batch notes say enrichment stopped for the quota (not 'failed')."""
    from leadflow.settings import reset_settings_cache

    monkeypatch.setenv("LEADFLOW_PIPELINE_DEPTH", "1")  # chunk k is done before k+1 asks
    monkeypatch.setenv("LEADFLOW_ENRICH_CONCURRENCY", "1")
    reset_settings_cache()
    sandbox_env.set_faults({"hunter": {"rate": 1.0, "kinds": ["429"]}})

    summary = run(location="United States", max_results=300, analyse=False)  # 3 chunks

    assert summary["leads_generated"] + summary["leads_merged"] + summary["rows_rejected"] == 300
    assert sandbox_env.stats()["targets"]["hunter"]["requests"] == 1  # was one per chunk
    with session_scope(env) as s:
        refused = s.execute(select(ApiUsage.batch_id, ApiUsage.units).where(
            ApiUsage.source == "hunter", ApiUsage.status_code == 429)).all()
    assert refused == [(summary["batch_id"], 0)]
    stopped = [n for n in summary["notes"] if n.startswith("email enrichment stopped")]
    assert len(stopped) == 1 and "Hunter's monthly quota is used up" in stopped[0]
    assert " leads loaded with their email lookup skipped or unfinished" in stopped[0]
    assert int(stopped[0].split(": ")[-1].split(" ")[0]) > 100  # leads of all three chunks
    assert not any(n.startswith("email enrichment failed") for n in summary["notes"])
