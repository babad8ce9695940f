"""Hunter.io v2: domain search, email finder and email verifier (with bounded polling while a
verification is still running, HTTP 202). The key goes in the X-API-KEY header, never the URL.

Hunter's own status semantics differ from the others: 403 means rate limited (retried), 429
means the plan's monthly usage is exhausted (QuotaExceededError), 222 a transient SMTP failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Annotated, Any

import httpx
from pydantic import ValidationError, WrapValidator

from clients.fields import OptBool, OptInt, OptStr, VendorModel, or_none
from clients.http import ApiCall, ApiResponse, TransientApiError, transport_for
from clients.keys import require_api_key
from leadflow.settings import Settings

SOURCE = "hunter"
ENDPOINT_DOMAIN_SEARCH = "domain-search"
ENDPOINT_EMAIL_FINDER = "email-finder"
ENDPOINT_EMAIL_VERIFIER = "email-verifier"
VERIFY_STATUSES = frozenset({"valid", "invalid", "accept_all", "webmail", "disposable", "unknown"})
# Hunter's status for "usage limit reached": the plan's monthly requests are spent (hunter.json).
QUOTA_STATUS = 429


class HunterVerification(VendorModel):
    date: OptStr = None
    status: OptStr = None


class HunterEmail(VendorModel):
    value: OptStr = None
    type: OptStr = None  # personal | generic
    confidence: OptInt = None
    first_name: OptStr = None
    last_name: OptStr = None
    position: OptStr = None
    seniority: OptStr = None
    department: OptStr = None
    verification: Annotated[HunterVerification | None, WrapValidator(or_none)] = None


class DomainSearchData(VendorModel):
    domain: OptStr = None
    organization: OptStr = None
    pattern: OptStr = None
    accept_all: OptBool = None
    webmail: OptBool = None
    disposable: OptBool = None
    emails: list[Any] = []

    def parsed_emails(self) -> list[HunterEmail]:
        """The emails that are well-formed objects with an address; others are skipped."""
        out: list[HunterEmail] = []
        for item in self.emails:
            if not isinstance(item, dict):
                continue
            try:
                email = HunterEmail.model_validate(item)
            except ValidationError:
                continue
            if email.value:
                out.append(email)
        return out


class EmailFinderData(VendorModel):
    email: OptStr = None
    score: OptInt = None
    first_name: OptStr = None
    last_name: OptStr = None
    position: OptStr = None
    domain: OptStr = None
    accept_all: OptBool = None
    verification: Annotated[HunterVerification | None, WrapValidator(or_none)] = None


class VerificationData(VendorModel):
    email: OptStr = None
    status: OptStr = None  # valid | invalid | accept_all | webmail | disposable | unknown
    result: OptStr = None  # deprecated: deliverable | undeliverable | risky
    score: OptInt = None
    accept_all: OptBool = None
    webmail: OptBool = None
    disposable: OptBool = None
    smtp_check: OptBool = None


class _Envelope(VendorModel):
    data: Annotated[dict[str, Any] | None, WrapValidator(or_none)] = None


def _data(model: type[VendorModel]) -> Callable[[Any], Any]:
    def parse(body: Any) -> Any:
        envelope = _Envelope.model_validate(body)
        return model.model_validate(envelope.data or {})

    return parse


def _classify(status: int, _headers: httpx.Headers) -> str | None:
    # Hunter's documented semantics: 403 "rate limit reached" (retry later), 429 "usage limit
    # reached" (the plan's monthly searches/verifications are spent: stop, whatever headers
    # come with it; Hunter documents none), 222 a transient SMTP failure.
    if status == 403:
        return "rate_limited"
    if status == QUOTA_STATUS:
        return "quota"
    if status == 222:
        return "retry"
    return None


class VerificationPendingError(TransientApiError):
    """Hunter still answered 202 (verification running) after every poll we allow."""


class HunterClient:
    """Hunter's email endpoints over a shared AsyncClient."""

    source = SOURCE

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: Settings,
        api_key: str,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._transport = transport_for(
            http,
            settings,
            source=SOURCE,
            base_url=settings.hunter_base_url,
            auth_headers={"X-API-KEY": api_key},
            classify=_classify,
        )
        self.verify_max_polls = max(1, settings.hunter_verify_max_polls)
        self.verify_poll_s = settings.hunter_verify_poll_s
        # The finder and the verifier answer only once their mail-server checks end (or, for
        # the verifier, with a 202 after ~20 s): never cut them off sooner than other calls.
        self.slow_timeout_s = max(settings.http_timeout_s, settings.hunter_slow_timeout_s)
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"HunterClient(base_url={self._transport.base_url!r})"

    @classmethod
    def from_settings(cls, http: httpx.AsyncClient, settings: Settings) -> HunterClient:
        return cls(http, settings, require_api_key(SOURCE, settings))

    async def domain_search(
        self, domain: str, *, limit: int = 10, offset: int = 0, type: str | None = None
    ) -> ApiResponse[DomainSearchData]:
        """Emails Hunter knows at `domain`. A search is billed when it returns an address."""
        params: dict[str, Any] = {"domain": domain, "limit": limit, "offset": offset}
        if type:
            params["type"] = type
        return await self._transport.request(
            "GET",
            "/domain-search",
            endpoint=ENDPOINT_DOMAIN_SEARCH,
            parse=_data(DomainSearchData),
            units=lambda d: 1 if d.emails else 0,
            params=params,
        )

    async def email_finder(
        self, domain: str, first_name: str, last_name: str
    ) -> ApiResponse[EmailFinderData]:
        """The most likely address of a named person at `domain` (billed when one is found)."""
        return await self._transport.request(
            "GET",
            "/email-finder",
            endpoint=ENDPOINT_EMAIL_FINDER,
            parse=_data(EmailFinderData),
            units=lambda d: 1 if d.email else 0,
            params={"domain": domain, "first_name": first_name, "last_name": last_name},
            read_timeout_s=self.slow_timeout_s,
        )

    async def email_verifier(self, email: str) -> ApiResponse[VerificationData]:
        """Verify `email`, polling while Hunter answers 202 (still running), at most
        `hunter_verify_max_polls` times. A verification is billed once, when it completes."""
        calls: list[ApiCall] = []
        for poll in range(1, self.verify_max_polls + 1):
            resp = await self._transport.request(
                "GET",
                "/email-verifier",
                endpoint=ENDPOINT_EMAIL_VERIFIER,
                parse=_data(VerificationData),
                units=lambda d: 1,
                params={"email": email},
                read_timeout_s=self.slow_timeout_s,
                # A 202 says only "not yet": its body (undocumented) is never needed.
                ignore_body_of=(202,),
            )
            if resp.status_code != 202:
                resp.calls[:] = calls + resp.calls
                return resp
            # The transport metered the 202 as a unit; Hunter counts the verification once.
            calls += [replace(c, units=0) for c in resp.calls]
            if poll < self.verify_max_polls:
                await self._sleep(self.verify_poll_s)
        raise VerificationPendingError(
            f"verification still running after {self.verify_max_polls} polls",
            source=SOURCE,
            endpoint=ENDPOINT_EMAIL_VERIFIER,
            status_code=202,
            calls=calls,
        )
