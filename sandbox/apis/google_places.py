"""Fake Google Places API (New) Text Search: POST /places:searchText with the required
X-Goog-FieldMask, at most 20 places per page and 60 per query via nextPageToken."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import names
from sandbox.apis.responses import SandboxState, bad_key, json_response, read_json
from sandbox.listings import Listing, international

PAGE_MAX, QUERY_CAP = 20, 60
_TYPE = {ind.name: ind.google_type for ind in names.INDUSTRIES}
_ABBREV = {full: short for full, short in names.STREET_TYPES}
# Parameters that must be identical across the pages of one query.
_PAGING_KEYS = {"pageToken", "pageSize", "maxResultCount"}


def _error(status: int, state: str, message: str, reason: str | None = None,
           extra: dict[str, str] | None = None) -> Response:
    err: dict[str, Any] = {"code": status, "message": message, "status": state}
    if reason:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                           "domain": "googleapis.com",
                           "metadata": {"service": "places.googleapis.com", **(extra or {})}}]
    return json_response({"error": err}, status)


def error_response(status: int, retry_after: float | None = 1.0) -> Response:
    if status == 429:
        return _error(429, "RESOURCE_EXHAUSTED",
                      "Quota exceeded for quota metric 'SearchTextRequest' and limit "
                      "'SearchTextRequestPerMinutePerProject' of service "
                      "'places.googleapis.com' for consumer 'project_number:123456789'.",
                      "RATE_LIMIT_EXCEEDED",
                      {"quota_limit": "SearchTextRequestPerMinutePerProject"})
    if status == 403:
        return _error(403, "PERMISSION_DENIED", "The request is missing a valid API key.")
    if status == 400:
        return _error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
    if status == 503:
        return _error(503, "UNAVAILABLE", "The service is currently unavailable.")
    if status >= 500:
        return _error(status, "INTERNAL", "Internal error encountered.")
    return _error(status, "FAILED_PRECONDITION", "Request failed.")


def _street_short(street: str) -> str:
    for full, short in _ABBREV.items():
        street = street.replace(f" {full}", f" {short}")
    return street.replace(" Suite ", " #")


def place(listing: Listing) -> dict[str, Any]:
    b = listing.business
    street = _street_short(b.street)
    ptype = _TYPE.get(b.industry, "establishment")
    out: dict[str, Any] = {
        "name": f"places/{listing.id}",
        "id": listing.id,
        "types": [ptype, "point_of_interest", "establishment"],
        "primaryType": ptype,
        "primaryTypeDisplayName": {"text": ptype.replace("_", " ").title(),
                                   "languageCode": "en-US"},
        "formattedAddress": f"{street}, {b.city}, {b.state} {b.postal_code}, USA",
        "shortFormattedAddress": f"{street}, {b.city}",
        "location": {"latitude": b.latitude, "longitude": b.longitude},
        "rating": b.rating,
        "userRatingCount": b.review_count,
        "googleMapsUri": f"https://maps.google.com/?cid={int(hashlib.md5(listing.id.encode()).hexdigest()[:16], 16)}",  # noqa: E501
        "businessStatus": "OPERATIONAL",
        "displayName": {"text": listing.name, "languageCode": "en"},
    }
    if listing.phone:
        out["nationalPhoneNumber"] = listing.phone
        out["internationalPhoneNumber"] = international(b.phone)
    if listing.website:
        out["websiteUri"] = listing.website
    return out


def _mask(raw: str) -> tuple[set[str], bool, bool]:
    """(place fields, all place fields?, nextPageToken wanted?) from a field mask."""
    fields = {f.strip() for f in raw.split(",") if f.strip()}
    if "*" in fields:
        return set(), True, True
    place_fields = {f.split(".", 1)[1].split(".")[0] for f in fields if f.startswith("places.")}
    return place_fields, "places.*" in fields or "places" in fields, "nextPageToken" in fields


_IN = re.compile(r"\s+(?:in|near|around)\s+", re.IGNORECASE)


def split_text_query(text: str) -> tuple[str, str]:
    """("salons", "Austin, TX") from "salons in Austin, TX"; without "in", a trailing known
    city/state is taken as the location."""
    parts = _IN.split(text.strip())
    if len(parts) >= 2:
        return " ".join(parts[:-1]), parts[-1]
    low = text.lower().replace(",", " ")
    places = sorted({c.name.lower() for c in names.CITIES} | {c.state_name.lower()
                    for c in names.CITIES}, key=len, reverse=True)
    for p in places:
        i = low.find(p)
        if i >= 0:
            return text[:i].strip(" ,"), text[i:].strip()
    return text, ""


def _token(fingerprint: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{offset}:{fingerprint}".encode()).decode().rstrip("=")


def _untoken(token: str) -> tuple[int, str] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        offset, fingerprint = raw.split(":", 1)
        return int(offset), fingerprint
    except (ValueError, UnicodeDecodeError):
        return None


def routes(state: SandboxState) -> list[Route]:
    async def search_text(request: Request) -> Response:
        return await state.faults.run("google_places", request, _search_text, error_response)

    async def _search_text(request: Request) -> Response:
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key or not key.strip():
            return error_response(403)
        if bad_key(key):
            return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API "
                          "key.", "API_KEY_INVALID")
        mask = (request.headers.get("x-goog-fieldmask") or request.query_params.get("fields")
                or request.query_params.get("$fields"))
        if not mask:
            return _error(400, "INVALID_ARGUMENT", "FieldMask is a required parameter. See "
                          "https://cloud.google.com/apis/docs/system-parameters on how to "
                          "provide it.")
        body = await read_json(request)
        if body is None:
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        text = body.get("textQuery")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "INVALID_ARGUMENT", "Empty text_query.")
        size = body.get("pageSize", body.get("maxResultCount", PAGE_MAX))
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return error_response(400)
        size = min(size or PAGE_MAX, PAGE_MAX)
        fingerprint = hashlib.sha1(orjson.dumps(
            {k: v for k, v in body.items() if k not in _PAGING_KEYS},
            option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        offset = 0
        if body.get("pageToken"):
            parsed = _untoken(str(body["pageToken"]))
            if parsed is None or parsed[1] != fingerprint:
                return error_response(400)
            offset = parsed[0]
        industry, location = split_text_query(text)
        found = state.catalog.search("google_places", industry, location)
        min_rating = body.get("minRating")
        if isinstance(min_rating, int | float) and not isinstance(min_rating, bool):
            found = [x for x in found if x.business.rating >= min_rating]
        cap = min(len(found), QUERY_CAP)
        page = found[offset : min(offset + size, cap)]
        fields, all_fields, want_token = _mask(mask)
        places = []
        for x in page:
            p = place(x)
            places.append(p if all_fields else {k: v for k, v in p.items() if k in fields})
        out: dict[str, Any] = {}
        if places and (all_fields or fields):
            out["places"] = places
        if want_token and offset + size < cap:
            out["nextPageToken"] = _token(fingerprint, offset + size)
        return json_response(out)

    return [Route("/places:searchText", search_text, methods=["POST"])]
