"""Fake Hunter v2 API: domain-search, email-finder, email-verifier (with its 202 "still
verifying" answer) and account."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import names
from sandbox.apis.responses import SandboxState, as_int, bad_key, bearer, json_response
from sandbox.dataset import Business, Email

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TYPES = {"personal", "generic"}
_SOURCES_DATE = ("2023-04-11", "2025-08-30")
_RESULT = {"valid": "deliverable", "invalid": "undeliverable"}


def _error(status: int, id_: str, details: str) -> Response:
    return json_response({"errors": [{"id": id_, "code": status, "details": details}]}, status)


def error_response(status: int, retry_after: float | None = 1.0) -> Response:
    return {
        400: lambda: _error(400, "wrong_params", "You are missing a required parameter"),
        401: lambda: _error(401, "authentication_failed", "No user found for the API key supplied"),
        403: lambda: _error(403, "too_many_requests",
                            "You have reached the rate limit for this endpoint"),
        429: lambda: _error(429, "too_many_requests",
                            "You have reached your monthly usage limit"),
    }.get(status, lambda: _error(status, "server_error" if status >= 500 else "error",
                                 "The server encountered an error"))()


def _pending(email: str | None) -> Response:
    # The body of a 202 is not documented (hunter.json: inferred); clients must not need it.
    return json_response({"data": {"email": email, "status": None},
                          "meta": {"params": {"email": email}}}, 202)


def _api_key(request: Request) -> str | None:
    return (request.query_params.get("api_key") or request.headers.get("x-api-key")
            or bearer(request))


def _source(domain: str, path: str) -> dict[str, Any]:
    return {"domain": domain, "uri": f"http://{domain}{path}", "extracted_on": _SOURCES_DATE[0],
            "last_seen_on": _SOURCES_DATE[1], "still_on_page": True}


def _email_row(b: Business, e: Email) -> dict[str, Any]:
    domain = e.address.split("@", 1)[1]
    verified = e.status in ("valid", "accept_all", "unknown")
    return {
        "value": e.address, "type": e.kind, "confidence": e.confidence,
        "sources": [_source(domain, "/contact" if e.kind == "generic" else "/about")],
        "first_name": e.first_name, "last_name": e.last_name, "position": e.position,
        "position_raw": e.position,
        "seniority": "executive" if e.position == "Owner" else (
            "senior" if e.position else None),
        "department": "management" if e.position else None,
        "linkedin": None, "twitter": None, "phone_number": None,
        "verification": {"date": _SOURCES_DATE[1] if verified else None,
                         "status": e.status if verified else None},
    }


def _pattern(b: Business) -> str | None:
    for e in b.emails:
        if e.kind == "personal" and e.first_name and e.address.endswith("@" + (b.domain or "")):
            local = e.address.split("@")[0]
            f, la = e.first_name.lower(), (e.last_name or "").lower()
            return {f: "{first}", f"{f}.{la}": "{first}.{last}",
                    f"{f[0]}{la}": "{f}{last}"}.get(local)
    return None


def verify_email(state: SandboxState, address: str) -> tuple[str, int, Business | None]:
    """What the verifier says about an address: (status, score, business it belongs to)."""
    hit = state.catalog.by_email.get(address.lower())
    if hit is not None:
        b, e = hit
        score = 50 if e.status in ("webmail", "disposable") else e.confidence
        return e.status, score, b
    domain = address.rsplit("@", 1)[1].lower()
    if domain in names.WEBMAIL_DOMAINS:
        return "webmail", 50, None
    if domain in names.DISPOSABLE_DOMAINS:
        return "disposable", 50, None
    owner = state.catalog.by_domain.get(domain)
    if owner is not None:
        return ("accept_all", 60, owner) if owner.catch_all else ("invalid", 8, owner)
    return "unknown", 30, None  # no mail server we know of


def routes(state: SandboxState) -> list[Route]:
    def guard(handler: Any, verifier: bool = False) -> Any:
        async def endpoint(request: Request) -> Response:
            def render(status: int, retry_after: float | None) -> Response | None:
                # A 202 fault: the verification is still running, however often it is asked
                # (the other endpoints have no 202: they answer normally).
                if status == 202:
                    return _pending(request.query_params.get("email")) if verifier else None
                return error_response(status, retry_after)

            # Hunter documents no wait header: its 429 is the monthly quota (nothing to wait
            # for) and its 403 rate limit names none. Only a 5xx gets the generic Retry-After.
            return await state.faults.run("hunter", request, handler, render, (503,))
        return endpoint

    async def domain_search(request: Request) -> Response:
        if bad_key(_api_key(request)):
            return error_response(401)
        q = request.query_params
        domain = (q.get("domain") or "").strip().lower().removeprefix("www.")
        company = (q.get("company") or "").strip()
        if not domain and not company:
            return _error(400, "wrong_params", "You are missing the domain parameter")
        limit, offset = as_int(q.get("limit"), 10), as_int(q.get("offset"), 0)
        if limit is None or offset is None or limit < 1 or limit > 100 or offset < 0:
            return _error(400, "pagination_error", "The limit and offset are invalid for your plan")
        type_ = q.get("type")
        if type_ and type_ not in _TYPES:
            return _error(400, "invalid_type", "The type is invalid")
        b = state.catalog.by_domain.get(domain) if domain else \
            state.catalog.find_by_company(company)
        if b is not None and not domain:
            domain = b.domain or ""
        emails = [e for e in (b.emails if b else ()) if e.address.endswith("@" + domain)]
        if type_:
            emails = [e for e in emails if e.kind == type_]
        rows = [_email_row(b, e) for e in emails[offset : offset + limit]] if b else []
        data = {
            "domain": domain or None, "disposable": False, "webmail": False,
            "accept_all": bool(b and b.catch_all), "pattern": _pattern(b) if b else None,
            "organization": b.name if b else None, "description": None,
            "industry": b.industry.title() if b else None, "twitter": None, "facebook": None,
            "linkedin": None, "instagram": None, "youtube": None, "technologies": [],
            "country": b.country if b else None, "state": b.state if b else None,
            "city": b.city if b else None, "postal_code": b.postal_code if b else None,
            "street": b.street if b else None,
            "headcount": _headcount(b.employees) if b else None,
            "company_type": "privately held" if b else None, "linked_domains": [],
            "emails": rows,
        }
        meta = {"results": len(emails), "limit": limit, "offset": offset,
                "params": {"domain": domain or None, "company": company or None,
                           "type": type_, "seniority": q.get("seniority"),
                           "department": q.get("department")}}
        return json_response({"data": data, "meta": meta})

    async def email_finder(request: Request) -> Response:
        if bad_key(_api_key(request)):
            return error_response(401)
        q = request.query_params
        domain = (q.get("domain") or "").strip().lower().removeprefix("www.")
        company = (q.get("company") or "").strip()
        first, last = (q.get("first_name") or "").strip(), (q.get("last_name") or "").strip()
        full = (q.get("full_name") or "").strip()
        if full and not (first and last):
            first, _, last = full.partition(" ")
        if not (domain or company) or not (first and last):
            return _error(400, "wrong_params", "You are missing a required parameter")
        b = state.catalog.by_domain.get(domain) if domain else \
            state.catalog.find_by_company(company)
        found: Email | None = None
        if b is not None:
            for e in b.emails:
                if (e.kind == "personal" and (e.first_name or "").lower() == first.lower()
                        and (e.last_name or "").lower() == last.lower()):
                    found = e
                    break
        mail_domain = found.address.split("@")[1] if found else (domain or None)
        data = {
            "first_name": first, "last_name": last,
            "email": found.address if found else None,
            "score": found.confidence if found else None,
            "domain": mail_domain,
            "accept_all": (b.catch_all if b else None) if found else None,
            "position": found.position if found else None,
            "twitter": None, "linkedin_url": None, "phone_number": None,
            "company": b.name if b else (company or None),
            "sources": [_source(mail_domain or "", "/about")] if found else [],
            "verification": {"date": _SOURCES_DATE[1] if found else None,
                             "status": found.status if found and found.status in (
                                 "valid", "accept_all", "unknown") else None},
        }
        meta = {"params": {"first_name": first, "last_name": last, "full_name": full or None,
                           "domain": domain or None, "company": company or None,
                           "max_duration": q.get("max_duration")}}
        return json_response({"data": data, "meta": meta})

    async def email_verifier(request: Request) -> Response:
        if bad_key(_api_key(request)):
            return error_response(401)
        address = (request.query_params.get("email") or "").strip()
        if not address:
            return _error(400, "wrong_params", "You are missing the email parameter")
        if not _EMAIL.match(address):
            return _error(400, "invalid_email", "The email is invalid")
        hit = state.catalog.by_email.get(address.lower())
        if hit is not None and hit[1].verify_pending:
            # The first look-up of such an address is still running: Hunter answers 202 and
            # the client polls again (counted once).
            calls = state.verify_calls.get(address.lower(), 0) + 1
            state.verify_calls[address.lower()] = calls
            if calls == 1:
                return _pending(address)
        status, score, b = verify_email(state, address)
        data = {
            "status": status,
            "result": _RESULT.get(status, "risky"),
            "_deprecation_notice": "Using result is deprecated, use status instead",
            "score": score, "email": address, "regexp": True, "gibberish": False,
            "disposable": status == "disposable", "webmail": status == "webmail",
            "mx_records": status != "unknown", "smtp_server": status != "unknown",
            "smtp_check": status in ("valid", "accept_all", "webmail"),
            "accept_all": status == "accept_all", "block": False,
            "sources": [_source(b.domain, "/contact")] if b is not None and b.domain else [],
        }
        return json_response({"data": data, "meta": {"params": {"email": address}}})

    async def account(request: Request) -> Response:
        if bad_key(_api_key(request)):
            return error_response(401)
        used = state.faults.stats.targets.get("hunter", {}).get("requests", 0)
        return json_response({"data": {
            "first_name": "Sandbox", "last_name": "User", "email": "owner@leadflow-sandbox.dev",
            "plan_name": "Growth", "plan_level": 2, "reset_date": "2099-01-01", "team_id": 4242,
            "requests": {"credits": {"used": float(used), "available": 1_000_000.0},
                         "searches": {"used": used, "available": 1_000_000},
                         "verifications": {"used": 0, "available": 1_000_000}},
            "calls": {"used": used, "available": 2_000_000},
        }})

    return [
        Route("/domain-search", guard(domain_search), methods=["GET"]),
        Route("/email-finder", guard(email_finder), methods=["GET"]),
        Route("/email-verifier", guard(email_verifier, verifier=True), methods=["GET"]),
        # Account is free and unthrottled at Hunter, so faults do not apply to it.
        Route("/account", account, methods=["GET"]),
    ]


def _headcount(n: int) -> str:
    for lo, hi in ((1, 10), (11, 50), (51, 200), (201, 500)):
        if n <= hi:
            return f"{lo}-{hi}"
    return "501-1000"
