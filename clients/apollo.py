"""Apollo.io organization search (POST /mixed_companies/search): X-Api-Key auth, page/per_page
pagination, typed organization records."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Annotated, Any

import httpx
from pydantic import WrapValidator

from clients.fields import OptInt, OptStr, VendorModel, or_none
from clients.http import SearchPage, transport_for
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
        start_page: int = 1,
    ) -> AsyncGenerator[SearchPage, None]:
        """Yield pages of organizations until `limit` records, the last page, or Apollo's
        500-page cap. The last page is trimmed to `limit` (what was billed is still metered)."""
        if limit <= 0:
            return
        # A fixed page size, not shrunk to `limit`: page numbers shift if per_page changes
        # mid-search, and a search resumed at `start_page` counts pages in this size.
        per_page = max(1, min(per_page, MAX_PER_PAGE))
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
                next_cursor=None if last else str(page + 1),
            )
            if last or seen >= limit:
                return
