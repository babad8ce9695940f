"""Fetches one chunk of candidate leads from a lead source, resuming from a cursor, so that a flow
can stream a large search chunk by chunk (bounded memory) and a retried chunk re-reads the same
pages."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from clients import apollo, pdl
from clients.apollo import ApolloClient
from clients.google_places import GooglePlacesClient
from clients.http import ApiCall, ApiError, SearchPage, make_async_client, most_billed
from clients.pdl import PdlClient
from leadflow.settings import Settings
from tasks.batches import Rejected
from tasks.normalise import normalise_records
from tasks.staging import CandidateLead

SOURCES = ("apollo", "google_places", "pdl")
# Records per full page of each search: the flow asks for chunks in whole pages of this size.
# (Apollo and PDL size a new search's pages for its limit, at most this; a resumed PDL scroll
# keeps the size its cursor carries, as its token is only valid with it; a resumed Apollo search
# keeps it or takes a smaller size that divides the records read: `page_size`. A run's PDL
# scroll takes pages of `run_page_size`, at most this.)
PAGE_SIZE = {"apollo": 100, "google_places": 20, "pdl": 100}
# Sources that bill every record a page returns (Google Places bills requests).
BILLED_PER_RECORD = ("apollo", "pdl")


def run_page_size(source: str, total: int) -> int:
    """Records per page of a run that reads `total` records of `source` in chunks of whole
    pages: PDL's scroll keeps its first page size, so it is picked for `total`, not for the
    first chunk (`clients.pdl.run_page_size`: 150 in pages of 75, not 100 and 100 billed for
    50 kept); the others' `PAGE_SIZE`."""
    return pdl.run_page_size(total) if source == "pdl" else PAGE_SIZE[source]


def page_size(source: str, cursor: str | None, want: int, size: int | None = None) -> int:
    """Records per page a fetch of `want` records from `cursor` asks `source` for (Apollo or
    PDL: the size the client picks for a new search of `want` in pages of at most `size`
    (default `PAGE_SIZE`), or for one resumed from `cursor`)."""
    size = size or PAGE_SIZE.get(source, 1)
    if source == "apollo":
        return apollo.search_page_size(want, cursor, size)
    if source == "pdl":
        return pdl.search_page_size(want, cursor, size)
    raise ValueError(f"{source!r} is not billed per record; expected one of {BILLED_PER_RECORD}")


def most_billed_records(source: str, cursor: str | None, want: int,
                        size: int | None = None) -> int:
    """The most records (so units) a fetch of `want` records from `cursor` can be billed: its
    pages come whole, the last one trimmed only after it was returned."""
    return most_billed(want, page_size(source, cursor, want, size))


def affordable(source: str, cursor: str | None, want: int, units: int,
               size: int | None = None) -> int:
    """The most records, at most `want`, a fetch from `cursor` may ask for without being billed
    more than `units`: a new search takes smaller pages (50 units: one page of 50); a resumed
    PDL scroll only whole pages of its size (0 when less than one is left), a resumed Apollo
    search whole pages of its size or of a smaller one that divides the records read."""
    want = min(want, units)
    while want > 0 and most_billed_records(source, cursor, want, size) > units:
        # A new search's evened pages may round up by less than one record a page; a resumed
        # one drops to whole pages of its size: a few steps either way.
        want -= 1
    return want


@dataclass(slots=True)
class SourceChunk:
    source: str
    candidates: list[CandidateLead] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    calls: list[ApiCall] = field(default_factory=list)
    next_cursor: str | None = None  # None: this query has nothing more
    total: int | None = None
    # The source failed after some pages came in: those are kept (they are paid for), and
    # the caller treats the source as failed after loading them.
    error: str | None = None


class SourceFetchError(Exception):
    """A chunk failed; carries the calls made before the failure so they are still metered."""

    def __init__(self, error: ApiError, calls: list[ApiCall]) -> None:
        super().__init__(str(error))
        self.error = error
        self.calls = calls


class NoSourceAvailable(RuntimeError):
    """Every source of a run failed: nothing could be fetched (the run fails, not succeeds
    with nothing)."""


def fallback_order(first: str, configured: list[str]) -> list[str]:
    """The requested source first, then the configured fallbacks, each once."""
    order = [first, *configured]
    return [s for i, s in enumerate(order) if s in SOURCES and s not in order[:i]]


def _pages(source: str, http: Any, settings: Settings, industry: str | None, location: str,
           cursor: str | None, want: int, size: int | None) -> AsyncGenerator[SearchPage, None]:
    keyword = (industry or "").strip()
    if source == "apollo":
        return ApolloClient.from_settings(http, settings).search_organizations(
            limit=want,
            keyword_tags=[keyword] if keyword and keyword.lower() != "any" else [],
            locations=[location] if location else [],
            cursor=cursor,
            per_page=size or apollo.MAX_PER_PAGE,
        )
    if source == "google_places":
        query = f"{keyword} in {location}" if keyword and keyword.lower() != "any" else location
        return GooglePlacesClient.from_settings(http, settings).search_text(
            query, limit=min(want, 60), page_token=cursor
        )
    if source == "pdl":
        must: list[dict[str, Any]] = []
        if keyword and keyword.lower() != "any":
            must.append({"match": {"industry": keyword}})
        if location:
            must.append({"match": {"location.name": location}})
        return PdlClient.from_settings(http, settings).search_companies(
            limit=want, query={"bool": {"must": must}}, scroll_token=cursor,
            size=size or pdl.MAX_SIZE,
        )
    raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")


async def fetch_chunk(source: str, industry: str | None, location: str, cursor: str | None,
                      want: int, settings: Settings, size: int | None = None) -> SourceChunk:
    """Up to `want` candidates of `source` from `cursor` on (a new Apollo or PDL search in pages
    of at most `size`, default `PAGE_SIZE`), normalised into the staging shape;
    records that cannot become leads come back as `rejected` (to quarantine), never dropped.
    A failure before any page raises SourceFetchError; after some pages, the chunk comes back
    with them and `error` set (a retry would pay for them again)."""
    chunk = SourceChunk(source=source)
    async with make_async_client(settings) as http:
        try:  # a missing key fails here, before any page: the flow falls back all the same
            pages = _pages(source, http, settings, industry, location, cursor, want, size)
        except ApiError as exc:
            raise SourceFetchError(exc, list(exc.calls)) from None
        try:
            page: SearchPage
            async for page in pages:
                leads, bad = normalise_records(source, page.records)
                chunk.candidates.extend(leads)
                chunk.rejected.extend(bad)
                chunk.calls.extend(page.calls)
                chunk.next_cursor = page.next_cursor
                chunk.total = page.total if page.total is not None else chunk.total
                if len(chunk.candidates) + len(chunk.rejected) >= want:
                    break
        except ApiError as exc:
            if not chunk.candidates and not chunk.rejected:
                raise SourceFetchError(exc, [*chunk.calls, *exc.calls]) from None
            chunk.calls.extend(exc.calls)
            chunk.error = str(exc)
            chunk.next_cursor = None
        finally:
            await pages.aclose()
    return chunk
