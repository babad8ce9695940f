"""The Prefect tasks the flows compose: thin, retryable wrappers over the plain functions of
`tasks/`. Each works on a whole chunk of leads (a Prefect task costs tens of milliseconds here),
takes plain values or DataFrames, never sessions or ORM objects, and is safe to retry."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

import pandas as pd
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote

from clients.http import ApiError, PermanentApiError, QuotaExceededError
from leadflow.settings import get_settings
from models.db import session_scope
from tasks.batches import BatchSummary, Rejected, finish_batch, start_batch, stopped_by_signal
from tasks.runtime import relax_gc
from tasks.staging import CANDIDATE_COLUMNS, CandidateLead

if TYPE_CHECKING:
    from tasks.enrich import EnrichResult
    from tasks.load import Seen
    from tasks.sources import SourceChunk
    from tasks.validation import ValidationOutcome

relax_gc()  # any process that runs these tasks (a flow, a worker, the benchmarks)

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


def quoted(value: T) -> T:
    """`value` as a task argument Prefect passes as is: without `quote`, Prefect walks every
    item of an argument looking for futures (~4 s per 1,000-lead chunk). Typed as the value
    itself, as the task sees it."""
    return cast(T, quote(value))


def waited(task: Task[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `task` in the task runner's threads and wait for its result, so that the flow's own
    thread only waits. Prefect cancels a run with SIGTERM, which its handler raises in the
    flow's main thread wherever that thread is: inside a task run there it landed in the
    middle of a database call or of Prefect's bookkeeping, and came out as another error
    (retried, so the cancelled run went on to its end; or 'Task run is not set'). Raised in a
    wait, it reaches the flow as itself; the task in its thread ends on its own, and the flow's
    cleanup waits for the loads in flight anyway."""
    return task.submit(*args, **kwargs).result()

# --- stage timing (the benchmark reports time inside stages vs orchestration) -------------------

_stage_lock = threading.Lock()
# batch id -> (stage, kind, start, end): kind "body" inside a task, "call" around it in the flow.
# Only batches whose run is timing them (start_stage_timing to stage_report or
# forget_stage_timing), so a long-lived process keeps no entry of a run that ended.
STAGE_INTERVALS: dict[int, list[tuple[str, str, float, float]]] = {}


def start_stage_timing(batch_id: int) -> None:
    """Record the stage intervals of this batch from now on, until its run reports or forgets
    them."""
    with _stage_lock:
        STAGE_INTERVALS.setdefault(batch_id, [])


def forget_stage_timing(batch_id: int) -> None:
    """Drop what was recorded for this batch (its run failed), and record nothing more: a task
    of that run still running in a thread does not bring the entry back."""
    with _stage_lock:
        STAGE_INTERVALS.pop(batch_id, None)


@contextmanager
def timed(batch_id: int | None, stage: str, kind: str = "body") -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        with _stage_lock:
            intervals = STAGE_INTERVALS.get(batch_id or 0)
            if intervals is not None:
                intervals.append((stage, kind, start, time.perf_counter()))


def stage_report(batch_id: int) -> dict[str, float]:
    """Seconds inside each stage's own code for a batch, and `orchestration`: the time Prefect
    added around them, measured as each call's wall time in the flow minus its body (for tasks
    the flow waits on) plus the delay from submit to body start (for tasks it submits)."""
    with _stage_lock:  # read once and forget: a long-lived worker must not accumulate them
        intervals = STAGE_INTERVALS.pop(batch_id, [])
    per_stage: dict[str, float] = {}
    bodies: dict[str, list[tuple[float, float]]] = {}
    calls: dict[str, list[tuple[float, float]]] = {}
    for stage, kind, start, end in intervals:
        if kind == "body":
            per_stage[stage] = per_stage.get(stage, 0.0) + end - start
            bodies.setdefault(stage, []).append((start, end))
        else:
            calls.setdefault(stage, []).append((start, end))
    overhead = 0.0
    by_stage: dict[str, float] = {}
    for stage, stage_calls in calls.items():
        before = overhead
        stage_bodies = sorted(bodies.get(stage, []))
        for (call_start, call_end), (body_start, body_end) in zip(
            sorted(stage_calls), stage_bodies, strict=False
        ):
            if body_end <= call_end:  # the flow waited for it: everything around the body
                overhead += (call_end - call_start) - (body_end - body_start)
            else:  # submitted: the flow went on; count the delay before the body started
                overhead += max(0.0, body_start - call_start)
        by_stage[stage] = overhead - before
    report = {stage: round(seconds, 3) for stage, seconds in per_stage.items()}
    report.update({f"orchestration:{k}": round(v, 3) for k, v in by_stage.items()})
    report["orchestration"] = round(overhead, 3)
    return report


# --- retry policy ---------------------------------------------------------------------------------


def _failure(state: Any) -> Exception | None:
    """The error a failed task run raised (None if it raised none)."""
    try:
        state.result()
    except Exception as exc:
        return exc
    return None


def retry_unless_permanent(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry transient failures, never a refused request or a spent
    quota (the flow falls back to another source instead), nor an error the run's own
    cancellation caused (`stopped_by_signal`)."""
    from tasks.sources import SourceFetchError

    exc = _failure(state)
    if exc is None:
        return True
    if stopped_by_signal(exc) is not None or isinstance(exc, ValueError):
        return False
    if isinstance(exc, SourceFetchError):
        return _worth_retrying(exc.error)
    if isinstance(exc, ApiError):
        return _worth_retrying(exc)
    return True


def _worth_retrying(error: ApiError) -> bool:
    """Not a refused request, not a spent quota, and not a server that asked us to wait
    longer than the clients would (a task retry seconds later would ignore its Retry-After)."""
    if isinstance(error, PermanentApiError | QuotaExceededError):
        return False
    return error.retry_after is None or error.retry_after <= get_settings().http_backoff_max_s


def retry_unless_hopeless(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition of database tasks: retry what another attempt may fix (the
    database unreachable or busy, a serialisation failure, a lost worker process), not a row
    that is not there (an unknown campaign) or a value refused (ValueError, LookupError,
    TypeError: the same input fails the same way), nor an error the run's own cancellation
    caused (`stopped_by_signal`)."""
    from sqlalchemy.exc import MultipleResultsFound, NoResultFound

    exc = _failure(state)
    hopeless = (NoResultFound, MultipleResultsFound, ValueError, LookupError, TypeError)
    return exc is None or not (isinstance(exc, hopeless) or stopped_by_signal(exc) is not None)


# The clients already retry each request (backoff, jitter, Retry-After); task retries cover a
# whole chunk failing, e.g. an API down for a minute.
_settings = get_settings()
NETWORK_TASK: dict[str, Any] = dict(
    retries=_settings.task_retries,
    retry_delay_seconds=exponential_backoff(backoff_factor=_settings.task_retry_delay_s),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_unless_permanent,
    cache_policy=NO_CACHE,
)
DB_TASK: dict[str, Any] = dict(
    retries=_settings.task_retries,
    retry_delay_seconds=exponential_backoff(backoff_factor=_settings.task_retry_delay_s),
    retry_condition_fn=retry_unless_hopeless,
    cache_policy=NO_CACHE,
)
PURE_TASK: dict[str, Any] = dict(cache_policy=NO_CACHE)


@dataclass(slots=True)
class Chunk:
    """What flows between the stages for one chunk of leads."""

    source: str
    candidates: list[CandidateLead]
    rejected: list[Rejected]


def to_frame(candidates: list[CandidateLead]) -> pd.DataFrame:
    """The chunk as a DataFrame, column by column (no deep copy of the raw payloads)."""
    columns: dict[str, list[Any]] = {
        name: [getattr(c, name) for c in candidates] for name in CANDIDATE_COLUMNS
    }
    columns["contact_name"] = [c.contact_name for c in candidates]
    return pd.DataFrame(columns)


# --- batch record and quarantine ------------------------------------------------------------------


@task(name="open-batch", **DB_TASK)
def open_batch(run_key: str, kind: str, source: str, industry: str | None,
               location: str | None, max_results: int | None) -> int:
    """The run's batch, after marking failed the batches of runs that died without closing
    theirs (no heartbeat for LEADFLOW_BATCH_STALE_AFTER_S)."""
    from prefect import get_run_logger

    from tasks.stale_batches import sweep_stale_batches
    from tasks.usage import ensure_api_configs

    with session_scope() as session:
        ensure_api_configs(session)
        batch_id = start_batch(session, run_key, kind, source, industry, location, max_results)
        swept = sweep_stale_batches(session, get_settings().batch_stale_after_s)
    for stale in swept:
        get_run_logger().warning(
            "batch %s (%s) was still running with no sign of life since %s UTC: marked failed",
            stale.batch_id, stale.kind, f"{stale.last_seen:%Y-%m-%d %H:%M:%S}")
    return batch_id


@task(name="close-batch", **DB_TASK)
def close_batch(batch_id: int, rows_loaded: int, sources_used: list[str],
                validation: dict[str, Any], notes: list[str], status: str = "done",
                lead_ids: Iterable[int] | None = None) -> BatchSummary:
    with session_scope() as session:
        return finish_batch(session, batch_id, rows_loaded, sources_used, validation, notes,
                            status, lead_ids)


# --- network stages -------------------------------------------------------------------------------


@task(name="fetch-source-chunk", **NETWORK_TASK)
def fetch_source_chunk(batch_id: int, source: str, industry: str | None, location: str,
                       cursor: str | None, want: int, size: int | None = None) -> SourceChunk:
    """Check the source's monthly quota, fetch up to `want` candidates from `cursor` (a new
    Apollo or PDL search in pages of at most `size`, default `PAGE_SIZE`), and meter every call
    made (also when the fetch fails)."""
    from clients.google_places import MAX_RESULTS_PER_QUERY
    from tasks.sources import (
        PAGE_SIZE,
        SourceFetchError,
        affordable,
        fetch_chunk,
        most_billed_records,
        page_size,
    )
    from tasks.usage import reserve_quota, settle_quota

    settings = get_settings()
    page = PAGE_SIZE[source]
    with timed(batch_id, "fetch"):
        try:
            with session_scope() as session:
                if source == "google_places":  # billed per request, at most 3 per query
                    pages = -(-min(want, MAX_RESULTS_PER_QUERY) // page)
                    reservation = reserve_quota(session, source, pages)
                    want = min(want, reservation.units * page)
                else:
                    # Billed per record returned, and a page comes whole: what the pages asked
                    # for can return is reserved. Near the limit fewer records are asked for: a
                    # new search then takes smaller pages, a resumed one whole pages of the size
                    # it goes on in (`tasks.sources.page_size`), or none.
                    reservation = reserve_quota(session, source,
                                                most_billed_records(source, cursor, want, size))
                    want = affordable(source, cursor, want, reservation.units, size)
                    if not want:  # (the raise rolls the reservation back)
                        raise QuotaExceededError(
                            f"less than one page ({page_size(source, cursor, 1, size)} records)"
                            " of the monthly limit left",
                            source=source, endpoint="-")
        except QuotaExceededError as exc:
            raise SourceFetchError(exc, []) from None
        calls: list[Any] = []
        try:
            chunk = asyncio.run(fetch_chunk(source, industry, location, cursor, want, settings,
                                            size))
            calls = chunk.calls
        except SourceFetchError as exc:
            calls = exc.calls
            raise
        finally:  # whatever happened, the calls made are metered and the rest is free again
            with session_scope() as session:
                settle_quota(session, reservation, calls, batch_id)
    return chunk


# Why a chunk's leads go without a Hunter lookup once Hunter said its quota is used up.
HUNTER_QUOTA_SPENT = "Hunter answered HTTP 429 (its monthly quota is used up) earlier in this run"


@task(name="enrich-emails", **NETWORK_TASK)
def enrich_emails(batch_id: int, candidates: list[CandidateLead]) -> dict[str, Any]:
    """Find and verify emails with Hunter (bounded concurrency); skipped, and said so, when
    Hunter's monthly quota is spent or too low for the whole chunk (each lead costs up to two
    requests: domain search and verification). Failures per lead are reported, leads kept.

    Once Hunter answers 429 (its monthly quota is used up), that call is recorded in api_usage
    with the batch, the batch's chunks enriching alongside (this process) make no new request
    after it, and its later chunks skip Hunter without a request: the outcome's
    `quota_stopped` counts the leads left without a lookup, `quota_error` says why."""
    from clients.http import make_async_client
    from clients.hunter import QUOTA_STATUS, SOURCE, HunterClient
    from models import LeadBatch
    from tasks.enrich import batch_quota_stop, enrich_candidates, reuse_known_emails
    from tasks.usage import batch_got_status, reserve_quota, settle_quota

    settings = get_settings()
    with timed(batch_id, "enrich"):
        with session_scope() as session:
            # A 429 of a chunk enriching at the same time (this process) stops this one's
            # requests too.
            batch = session.get(LeadBatch, batch_id)
            stop = batch_quota_stop((settings.database_url, batch_id,
                                     batch.started_at if batch else None))
            # Addresses the database already holds verified cost no Hunter request.
            asked = len(candidates)
            candidates = reuse_known_emails(session, candidates)
            reused = asked - len(candidates)
            spent = bool(candidates) and (stop.error is not None or batch_got_status(
                session, SOURCE, batch_id, QUOTA_STATUS))
        if not candidates:
            return {"skipped": None, "failures": 0, "reused": reused}
        if spent:  # same per-lead reasons as after a 429, without asking Hunter again
            result = asyncio.run(enrich_candidates(candidates, None, 1, HUNTER_QUOTA_SPENT))
            return enrich_outcome(result, None, reused)
        try:
            with session_scope() as session:
                reservation = reserve_quota(session, "hunter", 2 * len(candidates))
        except QuotaExceededError as exc:
            return {"skipped": f"email enrichment skipped: {exc}", "failures": 0}
        chosen = candidates[: reservation.units // 2]
        partly = None
        if len(chosen) < len(candidates):
            partly = (f"email enrichment skipped for {len(candidates) - len(chosen)} leads: "
                      "Hunter's monthly quota is nearly spent")

        async def run() -> Any:
            async with make_async_client(settings) as http:
                hunter = HunterClient.from_settings(http, settings)
                return await enrich_candidates(chosen, hunter, settings.enrich_concurrency,
                                               stop=stop)

        calls: list[Any] = []
        try:
            result = asyncio.run(run())
            calls = result.calls
        except PermanentApiError as exc:  # e.g. no Hunter key: leads go on without enrichment
            calls = exc.calls
            return {"skipped": f"email enrichment skipped: {exc}", "failures": 0}
        finally:  # whatever happened, the calls made are metered and the rest is free again
            with session_scope() as session:
                settle_quota(session, reservation, calls, batch_id)
    return enrich_outcome(result, partly, reused)


def enrich_outcome(result: EnrichResult, skipped: str | None, reused: int) -> dict[str, Any]:
    """What `enrich_emails` tells the flow: failures other than the quota's, and apart the
    leads left without a lookup because Hunter's quota is used up (`quota_stopped`, why)."""
    failures = [f for f in result.failures if not f.quota]
    return {"skipped": skipped, "failures": len(failures),
            "first_failure": failures[0].reason if failures else None,
            "emails_found": result.emails_found, "emails_verified": result.emails_verified,
            "reused": reused, "quota_stopped": result.quota_stopped,
            "quota_error": result.quota_error}


@task(name="analyse-websites", **NETWORK_TASK)
def analyse_websites(batch_id: int, urls: list[str]) -> dict[str, Any]:
    """Analyse each site once per domain: from the 30-day cache when fresh, else fetched
    (SSRF-safe, size and time limited) and parsed on every core; results go back to the cache."""
    from tasks.website.analyse import analyse_sites, load_cached, site_key, store_analyses

    settings = get_settings()
    with timed(batch_id, "analyse"):
        domains = {site_key(u): u for u in urls if u}
        domains.pop("", None)
        with session_scope() as session:
            cached = load_cached(session, list(domains))
        todo = [u for d, u in domains.items() if d not in cached]
        fresh = asyncio.run(analyse_sites(todo, settings)) if todo else {}
        with session_scope() as session:
            store_analyses(session, fresh.values())
    return {**cached, **fresh}


def apply_analyses(candidates: list[CandidateLead], analyses: dict[str, Any]) -> None:
    from tasks.website.analyse import site_key

    for c in candidates:
        if not c.website:
            continue
        a = analyses.get(site_key(c.website))
        if a is None:
            continue
        c.website_reachable = a.error is None
        if a.error is None:
            c.booking_tools = list(a.booking_tools or [])
            c.has_contact_form = a.has_contact_form
            c.booking_keyword_count = a.booking_keyword_count
            c.has_analytics = a.has_analytics
            c.digital_maturity = a.digital_maturity


# --- offline stages -------------------------------------------------------------------------------


@task(name="score-leads", **PURE_TASK)
def score_chunk(batch_id: int, frame: pd.DataFrame) -> pd.DataFrame:
    from tasks.scoring import score_leads

    with timed(batch_id, "score"):
        return score_leads(frame)


@task(name="dedupe-leads", **DB_TASK)
def dedupe_chunk(batch_id: int, frame: pd.DataFrame) -> tuple[pd.DataFrame, Seen]:
    """Normalised keys, clusters within the chunk, and matches against existing leads; also
    what the match could see of the leads, so the load re-matches only against leads
    committed since."""
    from models.db import get_engine
    from tasks.dedupe import dedupe_frame
    from tasks.load import seen_leads

    with timed(batch_id, "dedupe"):
        with get_engine().connect() as conn:
            seen = seen_leads(conn)  # before matching: a lead committed meanwhile is newer
            result = dedupe_frame(conn, frame)
        return result.apply(frame), seen


@task(name="validate-leads", **PURE_TASK)
def validate_chunk(batch_id: int, frame: pd.DataFrame) -> ValidationOutcome:
    from tasks.validation import validate_batch

    with timed(batch_id, "validate"):
        return validate_batch(frame)


@task(name="load-leads", **DB_TASK)
def load_chunk(batch_id: int, frame: pd.DataFrame, rejected: list[Rejected],
               seen: Seen | None = None, previous: Any = None) -> dict[str, Any]:
    """One transaction: quarantine the rejected rows and insert or merge the valid ones.
    Idempotent: a retry after a lost commit acknowledgement merges into what it already wrote.
    `seen`: what the chunk's dedupe step could see of the leads; `previous`: the previous
    chunk's load future (quoted: this load prepares its rows, then waits for it; see
    `OrderedLoads`)."""
    with timed(batch_id, "load"):
        return load_chunk_body(None, batch_id, frame, rejected, seen, previous)


def load_chunk_body(url: str | None, batch_id: int | None, frame: pd.DataFrame,
                    rejected: list[Rejected], seen: Seen | None = None,
                    previous: Any = None) -> dict[str, Any]:
    """What `load_chunk` does, on the database at `url` (the configured one when None); the
    offline benchmark calls it directly. On PostgreSQL it runs in the worker process of
    `tasks.runtime` (its Python, ~0.3 s per 10,000 leads, would otherwise compete for the GIL
    with the next chunk's stages); SQLite loads run here. `previous`: a future of the previous
    chunk's load, waited for once the rows are ready to go."""
    from tasks.runtime import load_in_worker, load_rows, pickled_for_worker

    settings = get_settings()
    url = url or settings.database_url
    postgres = url.startswith("postgresql")
    rows: Any = pickled_for_worker(frame) if postgres else frame
    if previous is not None:
        previous.result()
    run = load_in_worker if postgres else load_rows
    return run(url, batch_id, rows, rejected, seen, settings.dedupe_name_threshold)


class OrderedLoads:
    """Chunk loads in the background, one at a time and in chunk order, so the flow's thread
    can score, dedupe and validate the next chunks while PostgreSQL writes chunk k.

    `submit(frame, rejected, seen, previous)` starts one load and returns something with
    `.result()` (a Prefect future of `load_chunk.submit`, or a concurrent.futures one); the
    load must write only once `previous` (the previous chunk's load future, or None) is done
    (`load_chunk_body(..., previous)` waits for it). So the order of commits is the order of
    chunks and our own loads never contend for the advisory lock; and `add(...)` returns at
    once while at most `ahead` loads are waiting behind the running one, so the next load is
    ready when the running one ends (the flow's thread waits only when it is more than
    `ahead` loads ahead).
    Why the no-duplicate guarantee holds: chunk k's dedupe may read the database before the
    loads still unfinished when it ran commit. Its `seen` (the highest lead id and key version
    before dedupe) is then below their new leads and the leads they gave new match keys,
    which load k re-matches inside the lock (`tasks.load`), as it does for other runs' loads.
    `on_loaded(context, outcome)` runs on the caller's thread, in chunk order. Call `wait()`
    before closing the batch: it returns once the last load is done (raising its error)."""

    def __init__(self, submit: Callable[..., Any],
                 on_loaded: Callable[[Any, dict[str, Any]], None] | None = None,
                 ahead: int = 1) -> None:
        self._submit = submit
        self._on_loaded = on_loaded
        self._ahead = ahead
        self._in_flight: deque[tuple[Any, Any]] = deque()

    def add(self, frame: pd.DataFrame, rejected: list[Rejected], seen: Seen | None,
            context: Any = None) -> None:
        while len(self._in_flight) > self._ahead:
            self._finish_oldest()
        previous = self._in_flight[-1][0] if self._in_flight else None
        future = self._submit(frame, rejected, seen, previous)
        self._in_flight.append((future, context))

    def _finish_oldest(self) -> dict[str, Any]:
        future, context = self._in_flight[0]
        outcome = future.result()
        self._in_flight.popleft()
        if self._on_loaded is not None:
            self._on_loaded(context, outcome)
        return outcome

    def wait(self) -> dict[str, Any] | None:
        """Wait for every load in flight; the last one's outcome (None if there was none)."""
        outcome = None
        while self._in_flight:
            outcome = self._finish_oldest()
        return outcome

    def abandon(self) -> None:
        """After an error elsewhere: wait for the loads in flight (reported if they succeeded)
        without raising their errors; the caller's error is the one to report."""
        while self._in_flight:
            try:
                self._finish_oldest()
            except Exception:  # noqa: BLE001 - the caller's error is the one to report
                self._in_flight.popleft()
