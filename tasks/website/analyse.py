"""The website-analysis batch step: fetch many sites concurrently, parse them on a reused process
pool, record per-site errors, and cache results per registrable domain in `website_analyses`."""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.analysis import WebsiteAnalysis
from tasks.keys import registrable_domain
from tasks.runtime import exit_with
from tasks.website.detect import SiteFacts, analyse_html
from tasks.website.fetch import FetchResult, fetch_site, make_client

# A failed fetch is retried sooner than a successful analysis is refreshed.
ERROR_CACHE = timedelta(days=1)
_POOL: ProcessPoolExecutor | None = None
_POOL_SIZE = 0


@dataclass(slots=True)
class SiteAnalysis:
    """One domain's analysis (or why there is none); mirrors a `website_analyses` row."""

    domain: str
    url: str
    final_url: str | None = None
    http_status: int | None = None
    error: str | None = None
    booking_tools: list[str] = field(default_factory=list)
    has_contact_form: bool | None = None
    booking_keyword_count: int | None = None
    has_analytics: bool | None = None
    digital_maturity: int | None = None
    signals: dict[str, Any] = field(default_factory=dict)
    bytes_read: int | None = None
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    expires_at: datetime | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: WebsiteAnalysis) -> SiteAnalysis:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


def normalise_site_url(url: str) -> str:
    """A website as sources give it ('example.com', 'www.x.com/', 'https://...') -> a URL.
    Scheme-less sites start on http: sites with TLS redirect there themselves."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url.lstrip("/")
    return url


def site_key(url: str) -> str:
    """The cache key of a website: its registrable domain (the same rule dedupe uses, private
    suffixes included, so `bella.square.site` and `nova.square.site` are two sites), or, for a
    page on a shared host (a Facebook or booking-platform page), the host and path."""
    domain = registrable_domain(url)
    if domain:
        return domain
    try:
        parts = urlsplit(normalise_site_url(url))
    except ValueError:
        return url.strip().lower()[:255]
    host = (parts.hostname or "").rstrip(".").lower().removeprefix("www.")
    return (host + parts.path.rstrip("/").lower())[:255] or url.strip().lower()[:255]


def _parse(body: bytes, url: str, content_type: str | None) -> SiteFacts:
    return analyse_html(body, url, content_type)


def parse_pool(workers: int) -> ProcessPoolExecutor | None:
    """The process pool shared by every batch (created once; None means work inline)."""
    global _POOL, _POOL_SIZE
    if workers <= 1:
        return None
    if _POOL is None or workers != _POOL_SIZE:
        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
        # forkserver: the parent may run threads (Prefect, the event loop), which fork would copy
        # in whatever state they are in.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["tasks.website.detect", "tasks.website.fetch"])
        # Its workers exit with this process, even killed outright (tasks.runtime.exit_with).
        _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                    initializer=exit_with, initargs=(os.getpid(),))
        _POOL_SIZE = workers
    return _POOL


@atexit.register
def shutdown_parse_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL = None


def _from_fetch(
    domain: str, fetched: FetchResult, now: datetime, cache_days: float
) -> SiteAnalysis:
    return SiteAnalysis(
        domain=domain,
        url=fetched.url,
        final_url=fetched.final_url,
        http_status=fetched.status,
        error=fetched.error,
        bytes_read=len(fetched.body),
        fetched_at=now,
        expires_at=now + (ERROR_CACHE if fetched.error else timedelta(days=cache_days)),
        signals={"redirects": fetched.redirects, "truncated": fetched.truncated},
    )


def _apply(analysis: SiteAnalysis, facts: SiteFacts) -> SiteAnalysis:
    analysis.booking_tools = facts.booking_tools
    analysis.has_contact_form = facts.has_contact_form
    analysis.booking_keyword_count = facts.booking_keyword_count
    analysis.has_analytics = facts.has_analytics
    analysis.digital_maturity = facts.digital_maturity
    analysis.signals = {
        **analysis.signals,
        **facts.signals,
        "has_viewport": facts.has_viewport,
        "is_https": facts.is_https,
        "social_links": facts.social_links,
        "has_structured_data": facts.has_structured_data,
        "phone_booking": facts.phone_booking,
    }
    return analysis


async def analyse_sites(urls: Sequence[str], settings: Any) -> dict[str, SiteAnalysis]:
    """Fetch and analyse each site once per registrable domain (first URL wins). Failures are
    recorded in SiteAnalysis.error, never raised.

    With `parse_workers` > 1 the sites are sharded over that many worker processes, each of which
    fetches its share (own connection pool, `http_concurrency / workers` in flight) and parses
    pages as they arrive: fetching is CPU work too (TLS, HTTP parsing), so this keeps both cores
    busy and leaves the flow's process free for enrichment and orchestration."""
    by_domain: dict[str, str] = {}
    for url in urls:
        if url and url.strip():
            by_domain.setdefault(site_key(url), normalise_site_url(url))
    if not by_domain:
        return {}
    items = list(by_domain.items())
    # Each shard holds its process while it waits on the network too, so the pool has room for
    # the shards of every chunk the flow keeps in flight.
    pool = parse_pool(settings.parse_workers * max(1, getattr(settings, "pipeline_depth", 1)))
    if pool is None:
        results = await _fetch_and_parse(items, settings, settings.http_concurrency)
    else:
        workers = settings.parse_workers
        per_worker = max(1, settings.http_concurrency // workers)
        loop = asyncio.get_running_loop()
        shards = [items[i::workers] for i in range(workers)]
        done = await asyncio.gather(*(
            loop.run_in_executor(pool, _analyse_shard, shard, settings, per_worker)
            for shard in shards if shard
        ))
        results = [a for shard in done for a in shard]
    return {a.domain: a for a in results}


def _analyse_shard(
    items: list[tuple[str, str]], settings: Any, concurrency: int
) -> list[SiteAnalysis]:
    """Worker-process entry point: fetch and parse a shard of sites with its own event loop."""
    return asyncio.run(_fetch_and_parse(items, settings, concurrency))


async def _fetch_and_parse(
    items: list[tuple[str, str]], settings: Any, concurrency: int
) -> list[SiteAnalysis]:
    limit = asyncio.Semaphore(max(1, concurrency))
    now = datetime.now(UTC)

    async def one(domain: str, url: str, client: Any) -> SiteAnalysis:
        async with limit:
            fetched = await fetch_site(url, client, settings)
        analysis = _from_fetch(domain, fetched, now, settings.site_cache_days)
        if fetched.error is not None:
            return analysis
        try:
            facts = _parse(fetched.body, fetched.final_url, fetched.content_type)
        except Exception as exc:  # a page that breaks the parser must not sink the batch
            analysis.error = f"parse_error: {type(exc).__name__}: {exc}"[:300]
            analysis.expires_at = now + ERROR_CACHE
            return analysis
        return _apply(analysis, facts)

    async with make_client(settings, pool_size=concurrency) as client:
        return list(await asyncio.gather(*(one(d, u, client) for d, u in items)))


# --- cache --------------------------------------------------------------------------------------


def load_cached(
    session: Session, domains: Iterable[str], now: datetime | None = None
) -> dict[str, SiteAnalysis]:
    """Unexpired cached analyses for `domains`."""
    now = now or datetime.now(UTC)
    wanted = sorted(set(domains))
    found: dict[str, SiteAnalysis] = {}
    for i in range(0, len(wanted), 1000):
        rows = session.scalars(
            select(WebsiteAnalysis).where(
                WebsiteAnalysis.domain.in_(wanted[i:i + 1000]), WebsiteAnalysis.expires_at > now
            )
        )
        for row in rows:
            found[row.domain] = SiteAnalysis.from_row(row)
    return found


def store_analyses(session: Session, analyses: Iterable[SiteAnalysis]) -> int:
    """Insert or replace analyses by domain (ON CONFLICT DO UPDATE on PostgreSQL and SQLite)."""
    rows = []
    for a in analyses:
        row = a.to_row()
        row["url"] = row["url"][:500]
        row["final_url"] = row["final_url"][:500] if row["final_url"] else None
        if row["expires_at"] is None:
            row["expires_at"] = row["fetched_at"] + timedelta(days=30)
        rows.append(row)
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:
        raise NotImplementedError(f"no upsert for {dialect}")
    columns = [c for c in rows[0] if c != "domain"]
    for i in range(0, len(rows), 500):
        stmt = insert(WebsiteAnalysis).values(rows[i:i + 500])
        stmt = stmt.on_conflict_do_update(
            index_elements=["domain"], set_={c: stmt.excluded[c] for c in columns}
        )
        session.execute(stmt)
    return len(rows)


# --- the acceptance interface (leadflow analyse-site) ---------------------------------------------


class _Findings(Protocol):
    """What a summary reads: SiteFacts (a page just parsed) or SiteAnalysis (a cached row,
    whose columns are NULL when the fetch failed)."""

    booking_tools: Any
    has_contact_form: Any
    booking_keyword_count: Any
    has_analytics: Any
    digital_maturity: Any


def _summary(name: str, facts: _Findings | None, error: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "file": name,
        "booking_tools": list(facts.booking_tools or []) if facts else [],
        "has_contact_form": bool(facts.has_contact_form) if facts else False,
        "booking_keyword_count": (facts.booking_keyword_count or 0) if facts else 0,
        "has_analytics": bool(facts.has_analytics) if facts else False,
        "digital_maturity": (facts.digital_maturity or 0) if facts else 0,
    }
    if error is not None:
        out["error"] = error
    return out


def analyse_files(paths: Sequence[Path | str], url: str = "https://example.com/") -> list[dict]:
    """One summary per local HTML file, as if fetched from `url` (bytes, charset detected)."""
    results = []
    for path in paths:
        try:
            body = Path(path).read_bytes()
        except OSError as exc:
            results.append(_summary(str(path), None, f"unreadable: {exc.strerror or exc}"))
            continue
        results.append(_summary(str(path), analyse_html(body, url)))
    return results


def _url_summary(url: str, analysis: SiteAnalysis, cached: bool) -> dict[str, Any]:
    """The acceptance object for a live URL, plus `truncated` (the page was cut at
    `site_max_bytes` and only its head analysed) and `cached` (served from the cache)."""
    out = _summary(url, analysis)
    out["truncated"] = bool((analysis.signals or {}).get("truncated", False))
    out["cached"] = cached
    if analysis.error is not None:
        out["error"] = analysis.error
    return out


def analyse_url(url: str, settings: Any = None, refresh: bool = False) -> dict:
    """Fetch and analyse one live URL (same safety rules as the pipeline), through the same
    per-domain cache: an unexpired `website_analyses` row is returned unless `refresh`, and what
    is fetched is stored (the schema must exist: `leadflow migrate`)."""
    from models.db import session_scope

    if settings is None:
        from leadflow.settings import get_settings

        settings = get_settings()
    domain = site_key(url)
    if domain and not refresh:
        with session_scope(settings.database_url) as session:
            hit = load_cached(session, [domain]).get(domain)
        if hit is not None:
            return _url_summary(url, hit, cached=True)
    items = [(domain, normalise_site_url(url))]
    analysis = asyncio.run(_fetch_and_parse(items, settings, 1))[0]
    if domain:
        with session_scope(settings.database_url) as session:
            store_analyses(session, [analysis])
    return _url_summary(url, analysis, cached=False)
