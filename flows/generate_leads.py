"""Flow 1 of the design, "Generate Leads": fetch from a source -> normalise -> enrich (find and
verify emails) -> analyse websites -> score -> dedupe -> validate -> load, chunk by chunk.

Chunks stream through the stages so memory stays bounded however many leads are asked for
(at most `pipeline_depth` chunks in flight), and the network work of the newest chunks
(enrichment, website analysis) overlaps the scoring, dedupe, validation and load of the oldest.
Loads run in the background one at a time, in chunk order (`OrderedLoads`): PostgreSQL writes
chunk k while the flow's thread scores, dedupes and validates the next chunks, whose loads queue
behind it.
When a source is spent (monthly quota, no more results) or keeps failing, the flow falls back to
the next configured source and says so in the batch notes; when every source failed, the run
fails (batch status `failed`), rather than succeeding with nothing."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from pydantic import Field, StringConstraints

from leadflow.settings import MAX_RESULTS, MAX_SEARCH_TEXT, get_settings
from tasks.batches import Rejected, failure_note, merge_validation, summary_rows
from tasks.stale_batches import keep_alive
from tasks.steps import (
    Chunk,
    OrderedLoads,
    analyse_websites,
    apply_analyses,
    close_batch,
    dedupe_chunk,
    enrich_emails,
    fetch_source_chunk,
    forget_stage_timing,
    load_chunk,
    open_batch,
    quoted,
    score_chunk,
    stage_report,
    start_stage_timing,
    timed,
    to_frame,
    validate_chunk,
    waited,
)

if TYPE_CHECKING:
    from tasks.load import Seen

SourceName = Literal["apollo", "google_places", "pdl"]
# What to search for: some text (blank would search everything, anywhere).
SearchText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=MAX_SEARCH_TEXT)]


@flow(
    name="generate-leads",
    flow_run_name="generate-{source}-{industry}-{location}",
    log_prints=False,
)
def generate_leads(
    source: SourceName = "apollo",
    industry: SearchText = "salon",
    location: SearchText = "Austin, TX",
    max_results: Annotated[int, Field(ge=1, le=MAX_RESULTS)] = 200,
    enrich: bool = True,
    analyse: bool = True,
) -> dict[str, Any]:
    """Generate up to `max_results` leads for `industry` in `location`, starting with `source`."""
    from clients.http import QuotaExceededError
    from tasks.sources import NoSourceAvailable, SourceFetchError, fallback_order, run_page_size

    log = get_run_logger()
    settings = get_settings()
    run_key = f"generate:{flow_run.id}" if flow_run.id else f"generate:local:{id(log)}"
    batch_id = open_batch(run_key, "generate", source, industry, location, max_results)
    order = fallback_order(source, settings.source_fallback_order)
    notes: list[str] = []
    sources_used: list[str] = []
    validation: dict[str, Any] = {}
    rows_loaded = fetched = 0
    touched: set[int] = set()  # leads the loads created or merged into
    enrich_failures = [0]  # a cell finish() can update
    # Leads left without a Hunter lookup once Hunter said its monthly quota is used up, and why.
    quota_stop: dict[str, Any] = {"leads": 0, "why": None}
    pending: deque[tuple[Chunk, PrefectFuture[Any] | None, PrefectFuture[Any] | None]] = deque()

    def submit_load(frame: Any, rejected: list[Rejected], seen: Seen | None,
                    previous: PrefectFuture[Any] | None) -> PrefectFuture[Any]:
        with timed(batch_id, "load", "call"):
            # `previous` quoted: the load prepares its rows, then waits for it.
            return load_chunk.submit(batch_id, quoted(frame), quoted(rejected), seen,
                                     quoted(previous))

    def loaded(chunk: Chunk, outcome: dict[str, Any]) -> None:
        nonlocal rows_loaded
        rows_loaded += outcome["rows"]
        touched.update(outcome.get("lead_ids", ()))
        log.info(
            "chunk of %d from %s: %d new, %d merged, %d quarantined",
            len(chunk.candidates), chunk.source, outcome["inserted"], outcome["merged"],
            outcome["quarantined"],
        )

    # Chunk k's load runs in the background while chunk k+1 is scored, deduped and validated.
    loads = OrderedLoads(submit_load, loaded)

    def finish(chunk: Chunk, enriched: PrefectFuture[Any] | None,
               analysed: PrefectFuture[Any] | None) -> None:
        """Score, dedupe, validate a chunk once its network stages are done, then start its
        load (after the previous chunk's load is done)."""
        nonlocal validation
        if enriched is not None:
            outcome = enriched.result()
            if outcome.get("skipped") and outcome["skipped"] not in notes:
                notes.append(outcome["skipped"])
                log.warning(outcome["skipped"])
            if outcome.get("quota_stopped"):
                if quota_stop["why"] is None:
                    quota_stop["why"] = outcome.get("quota_error")
                    log.warning("email enrichment stopped: %s; the run's later leads are loaded "
                                "without a Hunter lookup", quota_stop["why"])
                quota_stop["leads"] += outcome["quota_stopped"]
            if outcome.get("failures"):
                enrich_failures[0] += outcome["failures"]
                log.warning("email enrichment failed for %d leads of this chunk (first: %s); "
                            "they are loaded without a verified email", outcome["failures"],
                            outcome.get("first_failure"))
        if analysed is not None:
            apply_analyses(chunk.candidates, analysed.result())
        with timed(batch_id, "score", "call"):
            frame = waited(score_chunk, batch_id, quoted(to_frame(chunk.candidates)))
        with timed(batch_id, "dedupe", "call"):
            frame, seen = waited(dedupe_chunk, batch_id, quoted(frame))
        with timed(batch_id, "validate", "call"):
            checked = waited(validate_chunk, batch_id, quoted(frame))
        validation = merge_validation(validation, checked.summary)
        rejected = chunk.rejected + [Rejected(**r.as_quarantine()) for r in checked.rejected]
        loads.add(checked.valid, rejected, seen, chunk)

    def quota_notes() -> list[str]:
        """The batch note saying enrichment stopped for Hunter's quota, if it did."""
        if not quota_stop["leads"]:
            return []
        return [f"email enrichment stopped, Hunter's monthly quota is used up "
                f"({quota_stop['why']}): {quota_stop['leads']} leads loaded with their email "
                "lookup skipped or unfinished"]

    def give_up(source: str, why: str) -> None:
        """Note and log that `source` is left, and for what."""
        then = "falling back to the next source" if source != order[-1] else "no source left to try"
        note = f"{source} {why}; {then}"
        notes.append(note)
        log.warning(note)

    # The batch's heartbeat beats while the run works (tasks/stale_batches.py).
    with keep_alive(batch_id, settings.batch_stale_after_s):
        start_stage_timing(batch_id)  # reported when the run succeeds, else forgotten
        try:
            for current in order:
                cursor: str | None = None
                failed = False
                # Pages sized for what is left to fetch (a PDL scroll keeps its first size: 150 in
                # pages of 75, so its last chunk is not billed a page of 100 to keep 50).
                page = run_page_size(current, max_results - fetched)
                while fetched < max_results:
                    # Whole pages per chunk, so no chunk leaves part of a page behind the cursor.
                    want = min(max(page, settings.batch_size // page * page), max_results - fetched)
                    try:
                        with timed(batch_id, "fetch", "call"):
                            got = waited(fetch_source_chunk, batch_id, current, industry,
                                         location, cursor, want, page)
                    except SourceFetchError as exc:
                        over = isinstance(exc.error, QuotaExceededError)
                        what = "is at its monthly limit" if over else "failed"
                        give_up(current, f"{what} ({exc.error})")
                        failed = True
                        break
                    if current not in sources_used:
                        sources_used.append(current)
                    fetched += len(got.candidates) + len(got.rejected)
                    log.info("fetched %d/%d candidates (%s)", fetched, max_results, current)
                    chunk = Chunk(current, got.candidates, got.rejected)
                    urls = [c.website for c in chunk.candidates if c.website]
                    enriched = analysed = None
                    if enrich:
                        with timed(batch_id, "enrich", "call"):
                            # quoted(): Prefect would otherwise walk every candidate for futures.
                            enriched = enrich_emails.submit(batch_id, quoted(chunk.candidates))
                    if analyse and urls:
                        with timed(batch_id, "analyse", "call"):
                            analysed = analyse_websites.submit(batch_id, quoted(urls))
                    pending.append((chunk, enriched, analysed))
                    while len(pending) >= max(1, settings.pipeline_depth):
                        finish(*pending.popleft())  # overlaps the network stages still in flight
                    if got.error is not None:  # after some pages: those are loaded, then fall back
                        give_up(current, f"failed after {len(got.candidates) + len(got.rejected)} "
                                         f"records of a chunk ({got.error}); they are kept")
                        failed = True
                        break
                    cursor = got.next_cursor
                    if cursor is None or not got.candidates and not got.rejected:
                        break
                if fetched >= max_results:
                    break
                if not failed and current != order[-1]:
                    note = f"{current} has no more results for this search; trying the next source"
                    notes.append(note)
                    log.info(note)
            if not sources_used:  # every source failed: a run that fetched nothing at all
                raise NoSourceAvailable(f"no source could be queried ({'; '.join(notes)})")
            while pending:
                finish(*pending.popleft())
            loads.wait()  # the last chunk's load, before the batch is closed
        except BaseException as exc:
            forget_stage_timing(batch_id)
            loads.abandon()
            log.error("lead generation failed: %s", failure_note(exc))
            closed = close_batch(batch_id, rows_loaded, sources_used, validation,
                                 [*notes, *quota_notes(), f"run failed: {failure_note(exc)}"],
                                 status="failed",
                                 lead_ids=touched)
            _publish_failed(closed.as_dict(), validation)
            raise
    stage_seconds = stage_report(batch_id)
    if fetched < max_results:
        searched = ", ".join(sources_used)
        notes.append(f"only {fetched} of {max_results} candidates found (searched: {searched})")
    notes.extend(quota_notes())
    if enrich_failures[0]:
        notes.append(f"email enrichment failed for {enrich_failures[0]} leads (see the run logs)")

    summary = waited(close_batch, batch_id, rows_loaded, sources_used, validation, notes,
                     lead_ids=touched).as_dict()
    summary["stage_seconds"] = stage_seconds
    _publish(summary, validation)
    log.info("batch %s done: %s", batch_id, {k: summary[k] for k in
             ("leads_generated", "leads_merged", "rows_rejected", "avg_score")})
    return summary


def _publish(summary: dict[str, Any], validation: dict[str, Any], failed: bool = False) -> None:
    """The batch summary, and the validation summary rule by rule, as table artifacts."""
    from tasks.validation import run_table

    create_table_artifact(
        key="lead-batch-summary",
        table=summary_rows(summary, validation),
        description=(f"Lead batch {summary['batch_id']}{' (failed)' if failed else ''}: "
                     "summary and validation"),
    )
    create_table_artifact(
        key="lead-batch-validation",
        table=run_table(validation),
        description=(f"Lead batch {summary['batch_id']}: {validation.get('rows_valid', 0)} of "
                     f"{validation.get('rows_in', 0)} rows passed the Great Expectations suite"),
    )


def _publish_failed(summary: dict[str, Any], validation: dict[str, Any]) -> None:
    """A failed run's batch on its page too: what it loaded before failing stays loaded, and
    its notes say what failed. The run's own error is the one to raise: an artifact that
    cannot be published (the Prefect API may be what failed) is only logged."""
    try:
        _publish(summary, validation, failed=True)
    except Exception as exc:  # noqa: BLE001 - the run's own error is the one to report
        get_run_logger().warning("the failed batch's summary was not published: %s", exc)
