"""Fake People Data Labs v5 API: POST /company/search (Elasticsearch `query` or `sql`,
`size`, `scroll_token`) and GET /company/enrich."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.apis.responses import SandboxState, as_int, bad_key, json_response, read_json
from sandbox.listings import Listing

_STATE_NAMES: dict[str, str] = {}
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "payment_required",
          404: "not_found", 405: "invalid_request_error", 429: "rate_limit_error"}
_MESSAGES = {
    400: "Request contained either missing or invalid parameters",
    401: "Request contained a missing or invalid key",
    402: "You have reached your account maximum (all matches have been used)",
    404: "No records were found matching your request",
    429: "An error occurred due to requests hitting the API too quick",
}
MINUTE_LIMIT = 1000
_INDUSTRY_FIELDS = {"industry", "industry_v2", "tags", "summary", "headline"}
_LOCATION_FIELDS = {"location.locality", "location.region", "location.country",
                    "location.name", "location.metro", "location_locality", "location_region",
                    "location_country", "location_name"}
_SQL_COND = re.compile(r"([a-z_][a-z0-9_.]*)\s*(?:=|like)\s*'((?:[^']|'')*)'", re.IGNORECASE)


def error_response(status: int, retry_after: float | None = 1.0, message: str | None = None
                   ) -> Response:
    """PDL's error envelope. A 429 speaks PDL's documented rate-limit headers, not
    Retry-After (which PDL does not document): the minute's remaining count at 0 and, unless
    `retry_after` is None, x-ratelimit-reset `retry_after` seconds from now."""
    headers: dict[str, str] | None = None
    if status == 429:
        headers = {"x-ratelimit-limit": f"{{'minute': {MINUTE_LIMIT}}}",
                   "x-ratelimit-remaining": "{'minute': 0}"}
        if retry_after is not None:
            headers["x-ratelimit-reset"] = _reset_at(retry_after)
    return json_response({"status": status, "error": {
        "type": _TYPES.get(status, "api_error"),
        "message": message or _MESSAGES.get(status, "An internal error occurred")}}, status,
        headers=headers)


def _reset_at(seconds: float) -> str:
    """The ISO 8601 time (whole seconds, as PDL sends it) `seconds` from now: rounded up so a
    client waiting for it never comes back early; 0 gives a time already past."""
    now = time.time()
    at = math.ceil(now + seconds) if seconds > 0 else math.floor(now)
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state_name(code: str) -> str:
    if not _STATE_NAMES:
        from sandbox.names import CITIES

        _STATE_NAMES.update({c.state: c.state_name for c in CITIES})
    return _STATE_NAMES.get(code, code)


def company(listing: Listing) -> dict[str, Any]:
    b = listing.business
    city, region = b.city.lower(), _state_name(b.state).lower()
    lo = (1, 11, 51, 201)
    size = next((f"{a}-{z}" for a, z in zip(lo, (10, 50, 200, 500), strict=True)
                 if b.employees <= z), "501-1000")
    slug = b.domain.split(".")[0] if b.domain else listing.name.replace(" ", "-")
    return {
        "id": listing.id, "name": listing.name,
        "display_name": listing.business.name, "size": size, "employee_count": b.employees,
        "linkedin_follower_count": b.review_count * 3, "founded": b.founded_year,
        "inferred_revenue": "$1M-$10M" if b.employees > 20 else "<$1M",
        "industry": b.industry, "industry_v2": b.industry, "naics": None, "sic": None,
        "location": {
            "name": f"{city}, {region}, united states", "locality": city, "region": region,
            "metro": f"{city}, {region}", "country": "united states",
            "continent": "north america", "street_address": b.street.lower(),
            "address_line_2": None, "postal_code": b.postal_code,
            "geo": f"{b.latitude:.2f},{b.longitude:.2f}",
        },
        "linkedin_id": str(90_000_000 + b.index),
        "linkedin_url": f"linkedin.com/company/{slug}", "facebook_url": None,
        "twitter_url": None, "profiles": [f"linkedin.com/company/{slug}"],
        "website": listing.website, "ticker": None, "type": "private",
        "summary": f"{listing.name} is a {b.industry} in {city}, {region}.",
        "tags": [b.industry], "headline": b.industry, "alternative_names": [],
        "alternative_domains": [], "affiliated_profiles": [],
    }


def _walk(node: Any, out: dict[str, list[str]]) -> None:
    """Collect term/terms/match/match_phrase/wildcard values by field from an ES query,
    descending through bool.must/filter/should (must_not is ignored)."""
    if isinstance(node, list):
        for item in node:
            _walk(item, out)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "bool" and isinstance(value, dict):
            for clause in ("must", "filter", "should"):
                _walk(value.get(clause), out)
        elif key in ("term", "terms", "match", "match_phrase", "wildcard", "prefix") and \
                isinstance(value, dict):
            for field, v in value.items():
                if isinstance(v, dict):
                    v = v.get("value", v.get("query"))
                vals = v if isinstance(v, list) else [v]
                out.setdefault(field, []).extend(str(x).replace("*", "") for x in vals
                                                 if x is not None)


def filters(body: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(industry keywords, locations, website values) from a `query` or `sql` search."""
    by_field: dict[str, list[str]] = {}
    if isinstance(body.get("sql"), str):
        for field, value in _SQL_COND.findall(body["sql"]):
            by_field.setdefault(field.lower(), []).append(value.replace("''", "'").strip("%"))
    else:
        _walk(body.get("query"), by_field)
    industries = [v for f, vs in by_field.items() if f in _INDUSTRY_FIELDS for v in vs]
    locations = [v for f, vs in by_field.items() if f in _LOCATION_FIELDS for v in vs]
    websites = by_field.get("website", [])
    return industries, locations, websites


def _rate_headers(state: SandboxState, credits: int) -> dict[str, str]:
    m, _, d = state.faults.usage.hit("pdl")
    return {
        "x-ratelimit-limit": f"{{'minute': {MINUTE_LIMIT}}}",
        "x-ratelimit-remaining": f"{{'minute': {max(0, MINUTE_LIMIT - m)}}}",
        "x-ratelimit-reset": "1970-01-01T00:00:00Z",
        "x-totallimit-remaining": str(max(0, 1_000_000 - d)),
        "x-totallimit-purchased-remaining": "0", "x-totallimit-overages-remaining": "0",
        "x-call-credits-type": "company", "x-call-credits-spent": str(credits),
        "x-lifetime-used": str(d),
    }


def _api_key(request: Request) -> str | None:
    return request.headers.get("x-api-key") or request.query_params.get("api_key")


def routes(state: SandboxState) -> list[Route]:
    async def search(request: Request) -> Response:
        return await state.faults.run("pdl", request, _search, error_response, (503,))

    async def _search(request: Request) -> Response:
        if bad_key(_api_key(request)):
            return error_response(401)
        body = await read_json(request) if request.method == "POST" else _query_params(request)
        if body is None:
            return error_response(400, message="Request body is not valid JSON")
        has_query, has_sql = body.get("query") is not None, body.get("sql") is not None
        if has_query == has_sql:
            return error_response(400, message="Exactly one of query or sql is required")
        size = as_int(body.get("size"), 1)
        start = as_int(body.get("from"), 0)
        if size is None or not 1 <= size <= 100 or start is None or not 0 <= start <= 9999:
            return error_response(400)
        # A scroll token is only valid with the query and the size it was issued for.
        fingerprint = hashlib.sha1(orjson.dumps(
            {"query": body.get("query"), "sql": body.get("sql"), "size": size},
            option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]
        if body.get("scroll_token"):
            parsed = _unscroll(str(body["scroll_token"]))
            if parsed is None or parsed[1] != fingerprint:
                return error_response(400, message="Invalid scroll_token for this query")
            start = parsed[0]
        industries, locations, websites = filters(body)
        found = state.catalog.search_many("pdl", industries, locations)
        if websites:
            wanted = {w.lower().removeprefix("www.") for w in websites}
            found = [x for x in found if x.business.domain in wanted]
        if not found:
            return error_response(404)
        page = found[start : start + size]
        out: dict[str, Any] = {"status": 200, "data": [company(x) for x in page],
                               "total": len(found)}
        # The last page carries no scroll_token: there is nothing further to fetch.
        out["scroll_token"] = _scroll(start + size, fingerprint) if start + size < len(found) \
            else None
        return json_response(out, headers=_rate_headers(state, len(page)))

    async def enrich(request: Request) -> Response:
        return await state.faults.run("pdl", request, _enrich, error_response, (503,))

    async def _enrich(request: Request) -> Response:
        if bad_key(_api_key(request)):
            return error_response(401)
        q = request.query_params
        index = state.catalog.sources["pdl"]
        listing: Listing | None = None
        if q.get("pdl_id"):
            listing = index.by_id.get(q["pdl_id"])
        elif q.get("website"):
            host = q["website"].lower().split("//")[-1].split("/")[0].removeprefix("www.")
            b = state.catalog.by_domain.get(host)
            listing = index.by_id.get(b.ids["pdl"]) if b else None
        elif q.get("name"):
            b = state.catalog.find_by_company(q["name"])
            listing = index.by_id.get(b.ids["pdl"]) if b else None
        else:
            return error_response(400, message="One of pdl_id, name, profile, ticker or "
                                  "website is required")
        if listing is None:
            return error_response(404)
        return json_response({"status": 200, "likelihood": 8, **company(listing)},
                             headers=_rate_headers(state, 1))

    return [
        Route("/company/search", search, methods=["POST", "GET"]),
        Route("/company/enrich", enrich, methods=["GET"]),
    ]


def _query_params(request: Request) -> dict[str, Any] | None:
    """GET form: the same fields as the JSON body, `query` given as a JSON string."""
    params: dict[str, Any] = dict(request.query_params)
    if "query" in params:
        try:
            params["query"] = orjson.loads(params["query"])
        except orjson.JSONDecodeError:
            return None
    return params


def _scroll(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(f"{offset}${fingerprint}".encode()).decode().rstrip("=")


def _unscroll(token: str) -> tuple[int, str] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        offset, fingerprint = raw.split("$", 1)
        return int(offset), fingerprint
    except (ValueError, UnicodeDecodeError):
        return None
