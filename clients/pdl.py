"""People Data Labs company search (POST /company/search): X-Api-Key auth, an Elasticsearch
`query` or a `sql` string, size/scroll_token pagination (the page size chosen for the limit, or
for a whole run's records, and kept in the cursor), typed company records."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any

import httpx
from pydantic import WrapValidator

from clients.fields import OptInt, OptStr, VendorModel, or_none
from clients.http import SearchPage, even_page_size, most_billed, transport_for
from clients.keys import require_api_key
from leadflow.settings import Settings

SOURCE = "pdl"
ENDPOINT_COMPANY_SEARCH = "company/search"
MAX_SIZE = 100


class PdlLocation(VendorModel):
    name: OptStr = None
    locality: OptStr = None
    region: OptStr = None
    country: OptStr = None
    street_address: OptStr = None
    address_line_2: OptStr = None
    postal_code: OptStr = None


class PdlCompany(VendorModel):
    """A company record of the PDL company schema."""

    id: OptStr = None
    name: OptStr = None
    display_name: OptStr = None
    website: OptStr = None
    industry: OptStr = None
    employee_count: OptInt = None
    size: OptStr = None
    founded: OptInt = None
    linkedin_url: OptStr = None
    location: Annotated[PdlLocation | None, WrapValidator(or_none)] = None
    # Not in the documented company schema, but present on some records: kept if given.
    phone: OptStr = None


class PdlSearchResponse(VendorModel):
    status: OptInt = None
    data: list[Any] = []
    total: OptInt = None
    scroll_token: OptStr = None


def page_size(limit: int, size: int = MAX_SIZE) -> int:
    """Records per page for a new scroll of `limit` records: as few pages as `size` allows,
    evened out so the last one is not billed for records we would drop (PDL bills every record
    returned, and a scroll keeps its first size, so only the first request can choose): 250
    records are 3 pages of 84 (252 billed), not 3 of 100 (300); 5 records are 1 page of 5."""
    return even_page_size(limit, max(1, min(size, MAX_SIZE)))


def run_page_size(total: int, size: int = MAX_SIZE) -> int:
    """Records per page for a scroll a run reads in several chunks, `total` records in all (each
    chunk whole pages of it): the scroll keeps its first size, so the first request must pick
    one that suits the last chunk too. The rule: no more requests than pages of `size` need
    (ceil(total / size)), and of the sizes that need no more, the largest one billing the fewest
    records. A size dividing `total` bills it exactly (150: pages of 75, billed 150; chunks of
    100 resumed in pages of 100 were billed 200); when none fits (a prime, 151) it is the
    evened size, under one record a page over (2 pages of 76, billed 152). A large `total`
    needs no search: 10,000 is 100 pages of 100, 9,973 is 100 pages of 100 (27 over)."""
    size = max(1, min(size, MAX_SIZE))
    total = max(1, total)
    fewest = even_page_size(total, size)  # the smallest size needing no more pages than `size`
    return min(range(size, fewest - 1, -1), key=lambda s: most_billed(total, s))


def make_cursor(size: int, scroll_token: str) -> str:
    """Where a scroll resumes: PDL's token and the page size it was issued for (a token is
    only valid with the same query and size)."""
    return f"{size}:{scroll_token}"


def parse_cursor(cursor: str) -> tuple[int | None, str]:
    """(page size, scroll token) of a `make_cursor` cursor; (None, cursor) for a bare PDL
    token, which is resumed with the size the caller gives."""
    head, sep, token = cursor.partition(":")
    if sep and head.isdigit() and token:
        return int(head), token
    return None, cursor


def search_page_size(limit: int, cursor: str | None = None, size: int = MAX_SIZE) -> int:
    """The page size `PdlClient.search_companies` asks for: a new scroll's `page_size`, or the
    size a `make_cursor` cursor was issued for (`size` for a bare PDL token)."""
    if cursor is None:
        return page_size(limit, size)
    issued_for, _token = parse_cursor(cursor)
    return max(1, min(issued_for or size, MAX_SIZE))


def _not_found_is_empty(status: int, _headers: httpx.Headers) -> str | None:
    # PDL answers a search without matches with 404 not_found: an empty result, not an error.
    return "ok" if status == 404 else None


class PdlClient:
    """People Data Labs company search over a shared AsyncClient."""

    source = SOURCE

    def __init__(self, http: httpx.AsyncClient, settings: Settings, api_key: str) -> None:
        self._transport = transport_for(
            http,
            settings,
            source=SOURCE,
            base_url=settings.pdl_base_url,
            auth_headers={"X-Api-Key": api_key},
            classify=_not_found_is_empty,
        )

    def __repr__(self) -> str:
        return f"PdlClient(base_url={self._transport.base_url!r})"

    @classmethod
    def from_settings(cls, http: httpx.AsyncClient, settings: Settings) -> PdlClient:
        return cls(http, settings, require_api_key(SOURCE, settings))

    async def search_companies(
        self,
        *,
        limit: int,
        query: dict[str, Any] | None = None,
        sql: str | None = None,
        size: int = MAX_SIZE,
        scroll_token: str | None = None,
    ) -> AsyncGenerator[SearchPage, None]:
        """Yield pages of companies matching exactly one of `query` (Elasticsearch) or `sql`
        until `limit` records or the scroll ends. Credits = records returned.

        A new search picks its page size for `limit` (`page_size`: at most `size`); a search
        resumed from a page's `next_cursor` keeps the size its token was issued for."""
        if (query is None) == (sql is None):
            raise ValueError("give exactly one of query (Elasticsearch) or sql")
        if limit <= 0:
            return
        size = search_page_size(limit, scroll_token, size)
        token = None if scroll_token is None else parse_cursor(scroll_token)[1]
        body: dict[str, Any] = {"size": size}
        if query is not None:
            body["query"] = query
        else:
            body["sql"] = sql
        seen, number = 0, 0
        while seen < limit:
            number += 1
            resp = await self._transport.request(
                "POST",
                "/company/search",
                endpoint=ENDPOINT_COMPANY_SEARCH,
                parse=PdlSearchResponse.model_validate,
                units=lambda r: len(r.data),
                json_body={**body, "scroll_token": token} if token else body,
            )
            data = resp.data
            if resp.status_code == 404:
                data = PdlSearchResponse()
            records = data.data[: limit - seen]
            seen += len(records)
            token = data.scroll_token
            last = not token or len(data.data) < size
            yield SearchPage(
                source=SOURCE, number=number, records=records, calls=resp.calls, total=data.total,
                next_cursor=None if last or token is None else make_cursor(size, token),
            )
            if last:
                return
