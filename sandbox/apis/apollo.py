"""Fake Apollo REST API v1: organization search and (obfuscated) people api_search."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.apis.responses import (
    SandboxState,
    as_int,
    as_list,
    bad_key,
    bearer,
    json_response,
    read_json,
)
from sandbox.listings import Listing, international

MINUTE, HOURLY, DAILY = 600, 6000, 50000
STATE_NAMES: dict[str, str] = {}  # filled lazily from sandbox.names
MAX_RECORDS = 50_000


def error_response(status: int, retry_after: float | None = 1.0) -> Response:
    if status == 429:
        body: dict[str, Any] = {"message": "The maximum number of api calls allowed for "
                                "api/v1/mixed_companies/search is 200 times per minute. "
                                "Please upgrade your plan."}
    elif status == 401:
        body = {"error": "Invalid access credentials."}
    elif status == 402:
        body = {"error": "You have insufficient credits. Please upgrade your plan.",
                "error_code": "INSUFFICIENT_CREDITS"}
    elif status == 403:
        body = {"error": "This endpoint is not accessible with this api_key on a free plan. "
                "Please upgrade your plan.", "error_code": "API_INACCESSIBLE"}
    elif status == 422:
        body = {"error": "Invalid parameters"}
    elif status >= 500:
        body = {"error": "Internal server error"}
    else:
        body = {"error": "Bad request"}
    return json_response(body, status)


def _params(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    # Array params may come in the query string with a [] suffix; the JSON body wins.
    merged: dict[str, Any] = {}
    for key in set(request.query_params.keys()):
        values = request.query_params.getlist(key)
        name = key[:-2] if key.endswith("[]") else key
        merged[name] = values if key.endswith("[]") or len(values) > 1 else values[0]
    merged.update(body)
    return merged


def _api_key(request: Request, params: dict[str, Any]) -> str | None:
    key = request.headers.get("x-api-key") or bearer(request)
    if not key and isinstance(params.get("api_key"), str):
        key = params["api_key"]
    return key


def _rate_headers(state: SandboxState) -> dict[str, str]:
    m, h, d = state.faults.usage.hit("apollo")
    return {
        "x-rate-limit-minute": str(MINUTE), "x-minute-usage": str(m),
        "x-minute-requests-left": str(max(0, MINUTE - m)),
        "x-rate-limit-hourly": str(HOURLY), "x-hourly-usage": str(h),
        "x-hourly-requests-left": str(max(0, HOURLY - h)),
        "x-rate-limit-24-hour": str(DAILY), "x-24-hour-usage": str(d),
        "x-24-hour-requests-left": str(max(0, DAILY - d)),
    }


def _state_name(code: str) -> str:
    if not STATE_NAMES:
        from sandbox.names import CITIES

        STATE_NAMES.update({c.state: c.state_name for c in CITIES})
    return STATE_NAMES.get(code, code)


def organization(listing: Listing) -> dict[str, Any]:
    b = listing.business
    slug = b.domain.split(".")[0] if b.domain else str(b.index)
    return {
        "id": listing.id,
        "name": listing.name,
        "website_url": listing.website,
        "blog_url": None,
        "angellist_url": None,
        "linkedin_url": f"http://www.linkedin.com/company/{slug}",
        "twitter_url": None,
        "facebook_url": f"https://www.facebook.com/{slug}" if b.index % 3 == 0 else None,
        "primary_phone": {"number": international(b.phone), "source": "Account",
                          "sanitized_number": b.phone},
        "languages": ["English"],
        "alexa_ranking": None,
        "phone": listing.phone,
        "linkedin_uid": str(90_000_000 + b.index),
        "founded_year": b.founded_year,
        "publicly_traded_symbol": None,
        "publicly_traded_exchange": None,
        "logo_url": None,
        "crunchbase_url": None,
        "primary_domain": b.domain,
        "sanitized_phone": b.phone,
        "industry": b.industry,
        "estimated_num_employees": b.employees,
        "keywords": list(dict.fromkeys([b.industry, *b.industry.split()])),
        "street_address": b.street,
        "postal_code": b.postal_code,
        "raw_address": f"{b.street}, {b.city}, {_state_name(b.state)} {b.postal_code}, US",
        "city": b.city,
        "state": _state_name(b.state),
        "country": "United States",
    }


def _employee_ok(ranges: list[str], n: int) -> bool:
    for r in ranges:
        lo, _, hi = r.partition(",")
        try:
            if int(lo or 0) <= n <= int(hi or 10**9):
                return True
        except ValueError:
            continue
    return False


def routes(state: SandboxState) -> list[Route]:
    async def companies(request: Request) -> Response:
        return await state.faults.run("apollo", request, _companies, error_response)

    async def _companies(request: Request) -> Response:
        body = await read_json(request)
        if body is None:
            return error_response(422)
        params = _params(request, body)
        if bad_key(_api_key(request, params)):
            return error_response(401)
        page = as_int(params.get("page"), 1)
        per_page = as_int(params.get("per_page"), 10)
        if page is None or per_page is None or page < 1 or per_page < 1:
            return error_response(422)
        page, per_page = min(page, 500), min(per_page, 100)
        found = state.catalog.search_many(
            "apollo", as_list(params.get("q_organization_keyword_tags")),
            as_list(params.get("organization_locations")))
        found = _filter(found, params)
        total = min(len(found), MAX_RECORDS)
        start = (page - 1) * per_page
        rows = [organization(x) for x in found[start : min(start + per_page, total)]]
        payload = {
            "breadcrumbs": [], "partial_results_only": False, "has_join": False,
            "disable_eu_prospecting": False, "partial_results_limit": 10000,
            "pagination": {"page": page, "per_page": per_page, "total_entries": total,
                           "total_pages": math.ceil(total / per_page)},
            "accounts": [], "organizations": rows, "model_ids": [r["id"] for r in rows],
            "num_fetch_result": None, "derived_params": None,
        }
        return json_response(payload, headers=_rate_headers(state))

    async def people(request: Request) -> Response:
        return await state.faults.run("apollo", request, _people, error_response)

    async def _people(request: Request) -> Response:
        body = await read_json(request)
        if body is None:
            return error_response(422)
        params = _params(request, body)
        if bad_key(_api_key(request, params)):
            return error_response(401)
        page, per_page = as_int(params.get("page"), 1), as_int(params.get("per_page"), 10)
        if page is None or per_page is None or page < 1 or per_page < 1:
            return error_response(422)
        per_page = min(per_page, 100)
        found = state.catalog.search_many(
            "apollo", as_list(params.get("q_organization_keyword_tags")),
            as_list(params.get("organization_locations")) or as_list(
                params.get("person_locations")))
        found = _filter(found, params)
        people = []
        for x in found[(page - 1) * per_page : page * per_page]:
            b = x.business
            people.append({
                "id": x.id[:-4] + "beef", "first_name": b.owner_first_name,
                "last_name_obfuscated": b.owner_last_name[:2] + "***" + b.owner_last_name[-1],
                "title": "Owner", "last_refreshed_at": "2025-10-02T11:20:32.690+00:00",
                "has_email": bool(b.emails), "has_city": True, "has_state": True,
                "has_country": True, "has_direct_phone": "Yes",
                "organization": {"name": x.name, "has_industry": True, "has_phone": True,
                                 "has_city": True, "has_state": True, "has_country": True,
                                 "has_zip_code": True, "has_revenue": False,
                                 "has_employee_count": True},
            })
        return json_response({"total_entries": min(len(found), MAX_RECORDS), "people": people},
                             headers=_rate_headers(state))

    return [
        Route("/mixed_companies/search", companies, methods=["POST"]),
        Route("/mixed_people/api_search", people, methods=["POST"]),
    ]


def _filter(found: list[Listing], params: dict[str, Any]) -> list[Listing]:
    """Apply the filters beyond industry/location (cheap: they run on the indexed subset)."""
    name = params.get("q_organization_name")
    domains = {d.lower().removeprefix("www.") for d in as_list(
        params.get("q_organization_domains_list"))}
    ids = set(as_list(params.get("organization_ids")))
    ranges = as_list(params.get("organization_num_employees_ranges"))
    if isinstance(name, str) and name.strip():
        needle = name.strip().lower()
        found = [x for x in found if needle in x.name.lower()]
    if domains:
        found = [x for x in found if x.business.domain in domains]
    if ids:
        found = [x for x in found if x.id in ids]
    if ranges:
        found = [x for x in found if _employee_ok(ranges, x.business.employees)]
    return found
