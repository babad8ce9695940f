"""Google Places Text Search (New) (POST /places:searchText): X-Goog-Api-Key and X-Goog-FieldMask
headers, pageSize/pageToken pagination, typed place records.

Google returns at most 60 places per query (3 pages of 20), whatever the page token says: a
larger `limit` is cut to 60 with a warning; cover more ground with narrower queries (a
neighbourhood, a postcode, a more specific category) rather than more pages."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import httpx
from pydantic import WrapValidator

from clients.fields import OptFloat, OptInt, OptStr, VendorModel, or_none
from clients.http import SearchPage, transport_for
from clients.keys import require_api_key
from leadflow.settings import Settings

log = logging.getLogger(__name__)

SOURCE = "google_places"
ENDPOINT_TEXT_SEARCH = "places:searchText"
MAX_PAGE_SIZE = 20
MAX_RESULTS_PER_QUERY = 60
DEFAULT_FIELD_MASK = ",".join(
    [
        "places.id",
        "places.displayName",
        "places.formattedAddress",
        "places.addressComponents",
        "places.websiteUri",
        "places.nationalPhoneNumber",
        "places.internationalPhoneNumber",
        "places.rating",
        "places.userRatingCount",
        "places.types",
        "places.primaryType",
        "places.businessStatus",
        "places.googleMapsUri",
        "nextPageToken",
    ]
)


class LocalizedText(VendorModel):
    text: OptStr = None
    languageCode: OptStr = None


class AddressComponent(VendorModel):
    longText: OptStr = None
    shortText: OptStr = None
    types: list[str] = []


class Place(VendorModel):
    """A place of the Text Search (New) response; only masked fields are present."""

    id: OptStr = None
    name: OptStr = None  # resource name "places/<id>"
    displayName: Annotated[LocalizedText | None, WrapValidator(or_none)] = None
    formattedAddress: OptStr = None
    shortFormattedAddress: OptStr = None
    addressComponents: Annotated[list[AddressComponent] | None, WrapValidator(or_none)] = None
    websiteUri: OptStr = None
    nationalPhoneNumber: OptStr = None
    internationalPhoneNumber: OptStr = None
    rating: OptFloat = None
    userRatingCount: OptInt = None
    types: Annotated[list[str] | None, WrapValidator(or_none)] = None
    primaryType: OptStr = None
    primaryTypeDisplayName: Annotated[LocalizedText | None, WrapValidator(or_none)] = None
    businessStatus: OptStr = None
    googleMapsUri: OptStr = None


class TextSearchResponse(VendorModel):
    # proto3 JSON omits empty repeated fields: no match is `{}`.
    places: list[Any] = []
    nextPageToken: OptStr = None


class GooglePlacesClient:
    """Google Places Text Search (New) over a shared AsyncClient."""

    source = SOURCE
    max_results_per_query = MAX_RESULTS_PER_QUERY

    def __init__(self, http: httpx.AsyncClient, settings: Settings, api_key: str) -> None:
        self._transport = transport_for(
            http,
            settings,
            source=SOURCE,
            base_url=settings.google_places_base_url,
            auth_headers={"X-Goog-Api-Key": api_key},
        )

    def __repr__(self) -> str:
        return f"GooglePlacesClient(base_url={self._transport.base_url!r})"

    @classmethod
    def from_settings(cls, http: httpx.AsyncClient, settings: Settings) -> GooglePlacesClient:
        return cls(http, settings, require_api_key(SOURCE, settings))

    async def search_text(
        self,
        text_query: str,
        *,
        limit: int,
        page_size: int = MAX_PAGE_SIZE,
        language_code: str = "en",
        region_code: str | None = None,
        included_type: str | None = None,
        field_mask: str = DEFAULT_FIELD_MASK,
        page_token: str | None = None,
    ) -> AsyncGenerator[SearchPage, None]:
        """Yield pages of places for `text_query` until `limit` (at most 60, Google's cap per
        query) or the last page. Billing is per request, so each call meters 1 unit."""
        if limit <= 0:
            return
        if limit > MAX_RESULTS_PER_QUERY:
            log.warning(
                "Google Places returns at most %d results per query; asked for %d. "
                "Split the search into narrower queries to get more.",
                MAX_RESULTS_PER_QUERY, limit,
            )
            limit = MAX_RESULTS_PER_QUERY
        # The page token is only valid with identical other parameters, so the size is fixed
        # (not shrunk to `limit`).
        page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        if "nextPageToken" not in field_mask.split(","):
            field_mask += ",nextPageToken"
        body: dict[str, Any] = {
            "textQuery": text_query,
            "pageSize": page_size,
            "languageCode": language_code,
        }
        if region_code:
            body["regionCode"] = region_code
        if included_type:
            body["includedType"] = included_type
        seen, number, token = 0, 0, page_token
        while seen < limit:
            number += 1
            request_body = {**body, "pageToken": token} if token else body
            resp = await self._transport.request(
                "POST",
                "/places:searchText",
                endpoint=ENDPOINT_TEXT_SEARCH,
                parse=TextSearchResponse.model_validate,
                units=lambda _r: 1,
                json_body=request_body,
                headers={"X-Goog-FieldMask": field_mask},
            )
            records = resp.data.places[: limit - seen]
            seen += len(records)
            token = resp.data.nextPageToken
            last = not token or not resp.data.places
            yield SearchPage(source=SOURCE, number=number, records=records, calls=resp.calls,
                             next_cursor=None if last else token)
            if last:
                return
