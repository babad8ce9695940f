"""Apollo.io organization search (POST /mixed_companies/search): X-Api-Key auth, page/per_page
pagination (the page size chosen for the limit and carried in the cursor), typed organization
records."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Annotated, Any

import httpx
from pydantic import WrapValidator

from clients.fields import OptInt, OptStr, VendorModel, or_none
from clients.http import SearchPage, even_page_size, transport_for
from clients.keys import require_api_key
from leadflow.settings import Settings

SOURCE = "apollo"
ENDPOINT_ORG_SEARCH = "mixed_companies/search"
MAX_PER_PAGE = 100  # documented maximum
MAX_PAGE = 500  # documented maximum page number


class ApolloPhone(VendorModel):
    number: OptStr = None
    sanitized_number: OptStr = None


class ApolloOrganization(VendorModel):
    """An organization row of the search response; fields the contract marks inferred
    (industry, size, city...) are optional like all others."""

    id: OptStr = None
    name: OptStr = None
    website_url: OptStr = None
    primary_domain: OptStr = None
    linkedin_url: OptStr = None
    phone: OptStr = None
    sanitized_phone: OptStr = None
    primary_phone: Annotated[ApolloPhone | None, WrapValidator(or_none)] = None
    industry: OptStr = None
    estimated_num_employees: OptInt = None
    founded_year: OptInt = None
    street_address: OptStr = None
    raw_address: OptStr = None
    city: OptStr = None
    state: OptStr = None
    postal_code: OptStr = None
    country: OptStr = None


class ApolloPagination(VendorModel):
    page: OptInt = None
    per_page: OptInt = None
    total_entries: OptInt = None
    total_pages: OptInt = None


class ApolloOrgSearchResponse(VendorModel):
    pagination: Annotated[ApolloPagination | None, WrapValidator(or_none)] = None
    # Records stay raw here and are validated one by one when normalised.
    organizations: list[Any] = []


def page_size(limit: int, per_page: int = MAX_PER_PAGE) -> int:
    """`per_page` for a new search of `limit` records: as few pages as `per_page` allows,
    evened out so the last one returns few records we would drop (we meter Apollo per record
    returned): 250 records are 3 pages of 84, not 3 of 100; 30 records 1 page of 30. The number
    of requests is the same as with `per_page` itself."""
    return even_page_size(limit, max(1, min(per_page, MAX_PER_PAGE)))


def make_cursor(per_page: int, page: int) -> str:
    """Where a search resumes: the next page number and the page size it counts in (Apollo's
    `page` is a number of pages of `per_page` records: without its size it means nothing)."""
    return f"{per_page}:{page}"


def parse_cursor(cursor: str) -> tuple[int | None, int]:
    """(per_page, page) of a `make_cursor` cursor; (None, page) for a bare page number, which is
    resumed with the per_page the caller gives. ValueError for anything else."""
    head, sep, page = cursor.partition(":")
    if sep:
        return int(head), int(page)
    return None, int(cursor)


def resume_at(limit: int, cursor: str, per_page: int = MAX_PER_PAGE) -> tuple[int, int]:
    """(per_page, page) a search resumed from a `make_cursor` cursor asks for (a bare page number
    counts in `per_page`).

    Page N of pages of P starts after record (N-1)*P, so the search goes on where it stopped in
    the cursor's size, or in any smaller size that divides that offset (at page offset/size+1);
    no other size can, it would skip or repeat records. A smaller one is taken when it bills
    fewer records for `limit` in no more requests: a last chunk of 50 resumed after 100 records
    in pages of 100 would be billed 100 records and keep 50; in pages of 50 (page 3) it is billed
    50. Near the monthly limit it also lets a resumed search fetch what is left (10 left: page
    11 of 10) instead of none. Never past Apollo's 500-page cap."""
    counted_in, page = parse_cursor(cursor)
    size = max(1, min(counted_in or per_page, MAX_PER_PAGE))
    page = max(1, page)
    offset = (page - 1) * size
    limit = max(1, limit)
    pages = -(-limit // size)
    best, best_cost = (size, page), (pages * size, pages)
    for smaller in range(size - 1, 0, -1):
        if offset % smaller:
            continue
        start, n = offset // smaller + 1, -(-limit // smaller)
        cost = (n * smaller, n)
        if n <= pages and start + n - 1 <= MAX_PAGE and cost < best_cost:
            best, best_cost = (smaller, start), cost
    return best


def search_page_size(limit: int, cursor: str | None = None,
                     per_page: int = MAX_PER_PAGE) -> int:
    """The per_page `ApolloClient.search_organizations` asks for: a new search's `page_size`, or
    the size a resumed one goes on in (`resume_at`)."""
    if cursor is None:
        return page_size(limit, per_page)
    return resume_at(limit, cursor, per_page)[0]


class ApolloClient:
    """Apollo's organization search over a shared AsyncClient."""

    source = SOURCE

    def __init__(self, http: httpx.AsyncClient, settings: Settings, api_key: str) -> None:
        self._transport = transport_for(
            http,
            settings,
            source=SOURCE,
            base_url=settings.apollo_base_url,
            auth_headers={"X-Api-Key": api_key, "Cache-Control": "no-cache"},
        )

    def __repr__(self) -> str:
        return f"ApolloClient(base_url={self._transport.base_url!r})"

    @classmethod
    def from_settings(cls, http: httpx.AsyncClient, settings: Settings) -> ApolloClient:
        return cls(http, settings, require_api_key(SOURCE, settings))

    async def search_organizations(
        self,
        *,
        limit: int,
        keyword_tags: Sequence[str] = (),
        locations: Sequence[str] = (),
        employee_ranges: Sequence[str] = (),
        name: str | None = None,
        extra_filters: dict[str, Any] | None = None,
        per_page: int = MAX_PER_PAGE,
        cursor: str | None = None,
    ) -> AsyncGenerator[SearchPage, None]:
        """Yield pages of organizations until `limit` records, the last page, or Apollo's
        500-page cap. The last page is trimmed to `limit` (what was billed is still metered).

        A new search picks its page size for `limit` (`page_size`: at most `per_page`); a
        search resumed from a page's `next_cursor` goes on in the size its page numbers count
        in, or a smaller one dividing the records already read that bills fewer for `limit`
        (`resume_at`: any other size would skip or repeat records)."""
        if limit <= 0:
            return
        if cursor is None:
            per_page, start_page = page_size(limit, per_page), 1
        else:
            per_page, start_page = resume_at(limit, cursor, per_page)
        body: dict[str, Any] = dict(extra_filters or {})
        if keyword_tags:
            body["q_organization_keyword_tags"] = list(keyword_tags)
        if locations:
            body["organization_locations"] = list(locations)
        if employee_ranges:
            body["organization_num_employees_ranges"] = list(employee_ranges)
        if name:
            body["q_organization_name"] = name
        seen = 0
        for page in range(max(1, start_page), MAX_PAGE + 1):
            resp = await self._transport.request(
                "POST",
                "/mixed_companies/search",
                endpoint=ENDPOINT_ORG_SEARCH,
                parse=ApolloOrgSearchResponse.model_validate,
                units=lambda r: len(r.organizations),
                json_body={**body, "page": page, "per_page": per_page},
            )
            data = resp.data
            records = data.organizations[: limit - seen]
            seen += len(records)
            pagination = data.pagination
            total_pages = pagination.total_pages if pagination else None
            last = (
                len(data.organizations) < per_page
                or page >= MAX_PAGE
                or (total_pages is not None and page >= total_pages)
            )
            yield SearchPage(
                source=SOURCE,
                number=page,
                records=records,
                calls=resp.calls,
                total=pagination.total_entries if pagination else None,
                next_cursor=None if last else make_cursor(per_page, page + 1),
            )
            if last or seen >= limit:
                return
