"""The shared HTTP layer of every API client: one pooled async httpx client, the retry/backoff
policy (exponential, full jitter, Retry-After honoured), typed errors and per-call metering.

API keys travel only in headers and are redacted from every message this module builds."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

import httpx
from httpx_aiohttp import AiohttpTransport
from pydantic import ValidationError

from leadflow.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Query-string and JSON-ish key material: api_key=..., key=..., apikey=..., token=...
_KEY_PARAM = re.compile(
    r"(?i)((?:api[_-]?key|key|access[_-]?token|token|x-api-key|x-goog-api-key)[\"']?\s*[=:]\s*[\"']?)"
    r"[^&\s\"',;}]+"
)
_REDACTED = "***"
SECRET_HEADERS = frozenset({"x-api-key", "x-goog-api-key", "authorization"})


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret value and every `key=...`-like parameter masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    return _KEY_PARAM.sub(lambda m: m.group(1) + _REDACTED, text)


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One HTTP request to an external API, for metering: units are what the vendor bills
    (records returned, or 1 per request for per-request plans)."""

    source: str
    endpoint: str
    status_code: int | None
    units: int
    called_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class ApiError(Exception):
    """Base of every client error; never carries an API key, keeps the calls made so far."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        endpoint: str,
        status_code: int | None = None,
        calls: list[ApiCall] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.endpoint = endpoint
        self.status_code = status_code
        self.calls: list[ApiCall] = list(calls or [])
        self.retry_after = retry_after

    def __str__(self) -> str:
        status = f" (HTTP {self.status_code})" if self.status_code is not None else ""
        # "-": no endpoint was called (a missing key, a spent quota).
        where = f" {self.endpoint}" if self.endpoint and self.endpoint != "-" else ""
        return f"{self.source}{where}{status}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class PermanentApiError(ApiError):
    """A 4xx other than a rate limit: retrying cannot help (bad key, bad parameters...)."""


class MissingApiKeyError(PermanentApiError):
    """No key configured for a source (neither a setting nor a Prefect Secret block)."""


class TransientApiError(ApiError):
    """Retries exhausted on 5xx, timeouts, connection errors or malformed bodies."""


class RateLimitedError(TransientApiError):
    """Still rate limited after every attempt (or told to wait longer than we may)."""


class QuotaExceededError(ApiError):
    """The plan's monthly limit is reached (our own metering, or the vendor says so)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry: exponential backoff with full jitter, capped."""

    max_attempts: int = 4
    base_s: float = 0.5
    max_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=max(1, settings.http_max_attempts),
            base_s=settings.http_backoff_base_s,
            max_s=settings.http_backoff_max_s,
        )

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number `attempt` (1-based): uniform in [0, min(max, base*2^(n-1))].
        Full jitter spreads a herd of clients that failed together."""
        ceiling = min(self.max_s, self.base_s * (2 ** max(0, attempt - 1)))
        return (rng or random).uniform(0.0, ceiling)

    def delay_s(self, attempt: int, retry_after: float | None) -> float:
        """The server's Retry-After wins over our backoff, but never beyond `max_s`."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_s)
        return self.backoff_s(attempt)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def parse_rate_limit_reset(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds until a rate-limit window resets, from an `x-ratelimit-reset` header (PDL: an
    ISO 8601 time such as 2025-10-02T17:31:00Z; epoch or delta seconds are read too); None if
    absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    now = now or datetime.now(UTC)
    try:
        number = float(value)
    except ValueError:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    if number > 1e9:  # a Unix time, not a number of seconds
        return max(0.0, number - now.timestamp())
    return max(0.0, number)


def vendor_message(body: Any) -> str | None:
    """The human message out of any of our vendors' error envelopes (Apollo `error`/`message`,
    Google `error.message`, PDL `error.message`, Hunter `errors[].details`)."""
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, dict):
        msg = err.get("message") or err.get("type")
        return str(msg) if msg else None
    if isinstance(err, str):
        return err
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return str(first.get("details") or first.get("id") or "")
    msg = body.get("message")
    return str(msg) if msg else None


def make_async_client(settings: Settings) -> httpx.AsyncClient:
    """The one pooled AsyncClient a process (or a task) shares across all API clients."""
    timeout = httpx.Timeout(settings.http_timeout_s, connect=settings.http_connect_timeout_s)
    limits = httpx.Limits(
        max_connections=settings.http_concurrency,
        max_keepalive_connections=settings.http_concurrency,
        keepalive_expiry=30.0,
    )
    return httpx.AsyncClient(
        timeout=timeout,
        limits=limits,
        transport=AiohttpTransport(limits=limits, trust_env=False),
        follow_redirects=False,
        headers={"Accept": "application/json", "User-Agent": "leadflow/0.1"},
    )


@dataclass(slots=True)
class ApiResponse(Generic[T]):
    """A parsed response plus every call (attempt) it took to get it."""

    status_code: int
    data: T
    headers: httpx.Headers
    calls: list[ApiCall]


class _Malformed(Exception):
    pass


Classifier = Callable[[int, httpx.Headers], str | None]


class ApiTransport:
    """Sends requests for one source with the retry policy; each API client owns one.

    `classify(status, headers)` lets a vendor override how a status is treated: return
    "retry", "rate_limited", "quota", "permanent", "ok" or None for the default rules."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        source: str,
        base_url: str,
        auth_headers: Mapping[str, str],
        policy: RetryPolicy,
        attempt_deadline_s: float,
        classify: Classifier | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.http = http
        self.source = source
        self.base_url = base_url.rstrip("/")
        self._auth_headers = dict(auth_headers)
        self._secrets = tuple(v for v in auth_headers.values() if v)
        self.policy = policy
        self.attempt_deadline_s = attempt_deadline_s
        self._classify = classify
        self._sleep = sleep

    def __repr__(self) -> str:  # never show the auth headers
        return f"ApiTransport(source={self.source!r}, base_url={self.base_url!r})"

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _kind(self, status: int, headers: httpx.Headers) -> str:
        if self._classify is not None:
            kind = self._classify(status, headers)
            if kind is not None:
                return kind
        if 200 <= status < 300:
            return "ok"
        if status == 429:
            return "rate_limited"
        if status == 402:
            return "quota"
        if status >= 500:
            return "retry"
        return "permanent"

    async def request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        parse: Callable[[Any], T],
        units: Callable[[T], int],
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        read_timeout_s: float | None = None,
        ignore_body_of: Collection[int] = (),
    ) -> ApiResponse[T]:
        """Send with retries; returns the parsed body of the first acceptable response.

        `parse` validates the JSON body (a failure counts as a malformed response and is
        retried); `units` says how many billable units a parsed body represents. An acceptable
        status in `ignore_body_of` (e.g. Hunter's 202 "still running", whose body no source
        documents) is parsed as an empty body, whatever it carries.
        `read_timeout_s` replaces the client's read timeout (and widens the per-attempt
        deadline to match) for an endpoint that answers slowly by design."""
        url = self.base_url + path
        all_headers = {**self._auth_headers, **(headers or {})}
        timeout, deadline_s = self.http.timeout, self.attempt_deadline_s
        if read_timeout_s is not None:
            connect_s = timeout.connect
            timeout = httpx.Timeout(read_timeout_s, connect=connect_s)
            deadline_s = max(deadline_s, read_timeout_s + (connect_s or 0.0))
        calls: list[ApiCall] = []
        last_reason = "no attempt made"
        last_status: int | None = None
        last_retry_after: float | None = None
        rate_limited = False
        for attempt in range(1, self.policy.max_attempts + 1):
            retry_after: float | None = None
            try:
                async with asyncio.timeout(deadline_s):
                    resp = await self.http.request(
                        method, url, params=params, json=json_body, headers=all_headers,
                        timeout=timeout,
                    )
                status = resp.status_code
                kind = self._kind(status, resp.headers)
                if kind == "ok":
                    try:
                        empty = not resp.content or status in ignore_body_of
                        data = parse({}) if empty else parse(resp.json())
                    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError,
                            TypeError, ValueError) as exc:
                        raise _Malformed(type(exc).__name__) from None
                    calls.append(ApiCall(self.source, endpoint, status, units(data)))
                    return ApiResponse(status, data, resp.headers, calls)
                calls.append(ApiCall(self.source, endpoint, status, 0))
                message = self.redact(self._message(resp))
                if kind == "permanent":
                    raise PermanentApiError(
                        message, source=self.source, endpoint=endpoint, status_code=status,
                        calls=calls,
                    )
                if kind == "quota":
                    raise QuotaExceededError(
                        message, source=self.source, endpoint=endpoint, status_code=status,
                        calls=calls,
                    )
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
                rate_limited = kind == "rate_limited"
                if retry_after is None and rate_limited:
                    # PDL throttles per fixed window and says when it ends, not how long to
                    # wait: retrying sooner only spends the attempts inside the same window.
                    # (A reset already past, clocks apart, falls back to our backoff.)
                    retry_after = parse_rate_limit_reset(
                        resp.headers.get("x-ratelimit-reset")) or None
                last_status, last_reason, last_retry_after = status, message, retry_after
                if retry_after is not None and retry_after > self.policy.max_s:
                    # Told to come back later than we are willing to wait (a 429, or a 503 for
                    # maintenance): give up now so the caller can fall back to another source
                    # instead of sleeping, or coming back too soon.
                    error_cls = RateLimitedError if rate_limited else TransientApiError
                    what = "rate limited" if rate_limited else f"HTTP {status}"
                    raise error_cls(
                        f"{what}; server asks to wait {retry_after:.0f}s: {message}",
                        source=self.source, endpoint=endpoint, status_code=status,
                        calls=calls, retry_after=retry_after,
                    )
            except _Malformed as exc:
                calls.append(ApiCall(self.source, endpoint, resp.status_code, 0))
                last_status, rate_limited = resp.status_code, False
                last_reason = f"malformed response body ({exc})"
            except (TimeoutError, httpx.TimeoutException):
                calls.append(ApiCall(self.source, endpoint, None, 0))
                last_status, rate_limited = None, False
                last_reason = f"timed out after {deadline_s:g}s"
            except (httpx.TransportError, httpx.DecodingError) as exc:
                # Messages of transport errors may quote the URL: redact, never chain.
                calls.append(ApiCall(self.source, endpoint, None, 0))
                last_status, rate_limited = None, False
                last_reason = self.redact(f"{type(exc).__name__}: {exc}")
            if attempt < self.policy.max_attempts:
                delay = self.policy.delay_s(attempt, retry_after)
                log.info(
                    "%s %s attempt %d/%d failed (%s); retrying in %.2fs",
                    self.source, endpoint, attempt, self.policy.max_attempts, last_reason, delay,
                )
                await self._sleep(delay)
        error_cls = RateLimitedError if rate_limited else TransientApiError
        raise error_cls(
            f"gave up after {self.policy.max_attempts} attempts: {last_reason}",
            source=self.source, endpoint=endpoint, status_code=last_status, calls=calls,
            retry_after=last_retry_after,
        )

    @staticmethod
    def _message(resp: httpx.Response) -> str:
        try:
            msg = vendor_message(resp.json())
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            msg = None
        if not msg:
            msg = resp.reason_phrase or f"HTTP {resp.status_code}"
        # Bound what a hostile server can push into our logs and exceptions.
        return msg[:500]


def transport_for(
    http: httpx.AsyncClient,
    settings: Settings,
    *,
    source: str,
    base_url: str,
    auth_headers: Mapping[str, str],
    classify: Classifier | None = None,
) -> ApiTransport:
    """An ApiTransport configured from settings (retry policy and per-attempt deadline)."""
    return ApiTransport(
        http,
        source=source,
        base_url=base_url,
        auth_headers=auth_headers,
        policy=RetryPolicy.from_settings(settings),
        # httpx's read timeout is per chunk, so a body that trickles in forever needs an
        # overall deadline per attempt as well.
        attempt_deadline_s=settings.http_timeout_s + settings.http_connect_timeout_s,
        classify=classify,
    )


def even_page_size(limit: int, largest: int) -> int:
    """Records per page for a search of `limit` records billed per record returned: as few
    pages as `largest` allows, evened out so the last page is not billed for records that
    would be dropped (250 records at most 100 a page: 3 pages of 84, 252 billed, not 300)."""
    largest = max(1, largest)
    pages = -(-max(1, limit) // largest)
    return -(-max(1, limit) // pages)


def most_billed(limit: int, size: int) -> int:
    """The most records a search of `limit` records in pages of `size` can return (and so be
    billed for): its pages come whole, the last one trimmed only after it is billed."""
    size = max(1, size)
    return -(-max(0, limit) // size) * size


@dataclass(slots=True)
class SearchPage:
    """One page of a paginated search: the vendor's records as received (normalised later,
    one by one, so a bad record is quarantined rather than failing the page)."""

    source: str
    number: int  # 1-based position of this page in the search
    records: list[Any]
    calls: list[ApiCall]
    total: int | None = None  # matches the vendor reports for the whole query, if it says
    # Where the search resumes (page number or vendor token); None once the search is over.
    next_cursor: str | None = None

    @property
    def units(self) -> int:
        return sum(call.units for call in self.calls)
