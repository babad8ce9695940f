"""Email enrichment with Hunter: find the best address for candidates that have a website but no
email (domain search), verify every address (email verifier), syntax-checked first.

Failures are per candidate: recorded with their reason, never raised, never dropping one."""

from __future__ import annotations

import asyncio
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from clients.http import ApiCall, ApiError, QuotaExceededError
from clients.hunter import VERIFY_STATUSES, HunterClient, HunterEmail, VerificationPendingError
from tasks.keys import normalise_email, registrable_domain
from tasks.staging import CandidateLead

# Titles of the people a cold email to a local business should reach.
_DECISION_MAKER = re.compile(
    r"\b(owner|co-?owner|founder|co-?founder|proprietor|principal|president|ceo|director|"
    r"manager|partner|head|vp|vice president|chief|coo|cto)\b",
    re.IGNORECASE,
)
HIGH_CONFIDENCE = 70
DOMAIN_SEARCH_LIMIT = 10


@dataclass(slots=True)
class EnrichFailure:
    candidate_id: str  # "<source>:<source_record_id>"
    reason: str
    quota: bool = False  # not enriched because Hunter's monthly quota is used up


@dataclass(slots=True)
class EnrichResult:
    """The same candidates (updated in place, same order), what failed, and every API call."""

    candidates: list[CandidateLead]
    failures: list[EnrichFailure] = field(default_factory=list)
    calls: list[ApiCall] = field(default_factory=list)
    emails_found: int = 0
    emails_verified: int = 0
    # Hunter said its monthly quota is used up (429), to this enrichment or to another of the
    # batch's: the error, once; calls stopped there.
    quota_error: str | None = None

    @property
    def quota_stopped(self) -> int:
        """Candidates left without (part of) their enrichment because the quota is used up."""
        return sum(1 for f in self.failures if f.quota)


class QuotaStop:
    """Hunter's quota 429 (its monthly quota is used up), shared by the enrichments of one batch:
    the first error, checked before every request. A batch's chunks enrich at the same time
    (the flow keeps several in flight), so a chunk must stop on another chunk's 429 before its
    next request, not go on until it gets a 429 of its own."""

    def __init__(self, error: str | None = None) -> None:
        self._lock = threading.Lock()
        self._error = error

    @property
    def error(self) -> str | None:
        return self._error

    def set(self, error: str) -> None:
        with self._lock:  # the first 429 is the one reported
            if self._error is None:
                self._error = error


# One QuotaStop per batch enriching in this process (the flow's chunks run as threads of its
# process); the last few batches only: a later chunk also learns the 429 from api_usage.
_QUOTA_STOPS: OrderedDict[Hashable, QuotaStop] = OrderedDict()
_QUOTA_STOPS_KEPT = 256
_QUOTA_STOPS_LOCK = threading.Lock()


def batch_quota_stop(batch: Hashable) -> QuotaStop:
    """The QuotaStop every chunk of `batch` enriching in this process shares. `batch` names one
    batch for good, e.g. (database, batch id, start time): an id alone comes back in a database
    that is emptied and filled again."""
    with _QUOTA_STOPS_LOCK:
        stop = _QUOTA_STOPS.get(batch)
        if stop is None:
            stop = _QUOTA_STOPS[batch] = QuotaStop()
            while len(_QUOTA_STOPS) > _QUOTA_STOPS_KEPT:
                _QUOTA_STOPS.popitem(last=False)
        _QUOTA_STOPS.move_to_end(batch)
        return stop


def candidate_id(candidate: CandidateLead) -> str:
    return f"{candidate.source}:{candidate.source_record_id}"


def check_syntax(address: str) -> str | None:
    """The normalised address, or None when its syntax is invalid (no network involved)."""
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized
    except (EmailNotValidError, AttributeError):
        return None


def pick_best_email(emails: list[HunterEmail]) -> HunterEmail | None:
    """A decision maker's personal address with high confidence, else the best generic
    address, else the most confident other personal one; only syntactically valid ones."""

    def rank(e: HunterEmail) -> tuple[int, int]:
        confidence = e.confidence or 0
        personal = e.type == "personal" or bool(e.first_name and e.last_name)
        if personal and confidence >= HIGH_CONFIDENCE and _DECISION_MAKER.search(
            e.position or ""
        ):
            tier = 0
        elif not personal:
            tier = 1
        else:
            tier = 2
        return tier, -confidence

    for email in sorted(emails, key=rank):
        if email.value and check_syntax(email.value):
            return email
    return None


class _Run:
    """State shared by the concurrent per-candidate coroutines of one enrichment."""

    def __init__(self, hunter: HunterClient | None, result: EnrichResult,
                 stop: QuotaStop) -> None:
        self._hunter = hunter
        self.result = result
        self.stop = stop
        # One request per domain and per address in a run, however many candidates share it
        # (a chain's branches, one business listed twice): the others await the same answer.
        self._searches: dict[str, asyncio.Future[Any]] = {}
        self._verifications: dict[str, asyncio.Future[Any]] = {}

    @property
    def hunter(self) -> HunterClient:
        if self._hunter is None:  # only when the quota is known to be spent: nothing calls
            raise RuntimeError("no Hunter client to call")
        return self._hunter

    @staticmethod
    def _shared(memo: dict[str, asyncio.Future[Any]], key: str,
                call: Callable[[], Awaitable[Any]]) -> tuple[asyncio.Future[Any], bool]:
        """The one call for `key` in this run, and whether this caller started it (it alone
        meters the call)."""
        future = memo.get(key)
        if future is None:
            memo[key] = future = asyncio.ensure_future(call())
            return future, True
        return future, False

    def fail(self, candidate: CandidateLead, reason: str, quota: bool = False) -> None:
        self.result.failures.append(EnrichFailure(candidate_id(candidate), reason, quota))

    def quota_spent(self) -> bool:
        """Whether Hunter's quota is known to be used up (here or in another chunk of the batch):
        asked right before each request."""
        if self.stop.error is None:
            return False
        self.result.quota_error = self.result.quota_error or self.stop.error
        return True

    def quota_skip(self, candidate: CandidateLead, step: str) -> None:
        self.fail(candidate, f"{step} skipped: {self.stop.error}", quota=True)

    def api_failed(self, candidate: CandidateLead, step: str, exc: ApiError,
                   metered: bool = True) -> None:
        if metered:
            self.result.calls.extend(exc.calls)
        quota = isinstance(exc, QuotaExceededError)
        if quota:
            # Hunter's monthly usage is gone: stop calling it for the rest of the batch.
            self.stop.set(str(exc))
            self.result.quota_error = self.result.quota_error or self.stop.error
        self.fail(candidate, f"{step}: {exc}", quota)

    async def enrich(self, candidate: CandidateLead) -> None:
        if candidate.email:
            address = check_syntax(candidate.email)
            if address is None:
                candidate.email_status = "invalid"
                return
            candidate.email = address
            await self.verify(candidate)
            return
        if not candidate.website:
            return
        domain = registrable_domain(candidate.website)
        if domain is None:  # a Facebook page, a booking platform...: no domain of its own
            return
        if self.quota_spent():
            self.quota_skip(candidate, "domain-search")
            return
        if candidate.contact_first_name and candidate.contact_last_name:
            # A named contact (CSV, PDL): ask for that person's address first.
            found = await self.find_named(candidate, domain)
            if found is None:  # failed (and recorded)
                return
            if found:
                await self.verify(candidate)
                return
            if self.quota_spent():
                self.quota_skip(candidate, "domain-search")
                return
        search, first = self._shared(
            self._searches, domain,
            lambda: self.hunter.domain_search(domain, limit=DOMAIN_SEARCH_LIMIT))
        try:
            resp = await asyncio.shield(search)
        except ApiError as exc:
            self.api_failed(candidate, "domain-search", exc, metered=first)
            return
        if first:
            self.result.calls.extend(resp.calls)
        best = pick_best_email(resp.data.parsed_emails())
        if best is None or best.value is None:
            return
        candidate.email = check_syntax(best.value)
        candidate.email_confidence = best.confidence
        if best.first_name and best.last_name and not candidate.contact_name:
            candidate.contact_first_name = best.first_name
            candidate.contact_last_name = best.last_name
            candidate.contact_title = best.position
        self.result.emails_found += 1
        await self.verify(candidate)

    async def find_named(self, candidate: CandidateLead, domain: str) -> bool | None:
        """Hunter's email finder for the candidate's named contact; True if it found one, None
        if the request failed (recorded as the candidate's failure)."""
        try:
            resp = await self.hunter.email_finder(
                domain, candidate.contact_first_name or "", candidate.contact_last_name or "")
        except ApiError as exc:
            self.api_failed(candidate, "email-finder", exc)
            return None
        self.result.calls.extend(resp.calls)
        address = check_syntax(resp.data.email) if resp.data.email else None
        if address is None:
            return False
        candidate.email = address
        candidate.email_confidence = resp.data.score
        self.result.emails_found += 1
        return True

    async def verify(self, candidate: CandidateLead) -> None:
        if candidate.email is None:
            return
        if self.quota_spent():
            self.quota_skip(candidate, "email-verifier")
            return
        address = candidate.email
        check, first = self._shared(self._verifications, address.lower(),
                                    lambda: self.hunter.email_verifier(address))
        try:
            resp = await asyncio.shield(check)
        except VerificationPendingError as exc:
            if first:
                self.result.calls.extend(exc.calls)
            candidate.email_status = "unknown"
            self.fail(candidate, f"email-verifier: {exc}")
            return
        except ApiError as exc:
            self.api_failed(candidate, "email-verifier", exc, metered=first)
            return
        if first:
            self.result.calls.extend(resp.calls)
        status = resp.data.status
        candidate.email_status = status if status in VERIFY_STATUSES else "unknown"
        if candidate.email_confidence is None and resp.data.score is not None:
            candidate.email_confidence = resp.data.score
        self.result.emails_verified += 1


async def enrich_candidates(
    candidates: list[CandidateLead], hunter: HunterClient | None, concurrency: int,
    quota_error: str | None = None, stop: QuotaStop | None = None,
) -> EnrichResult:
    """Find and verify emails for a batch, at most `concurrency` candidates in flight.
    `quota_error`: Hunter's monthly quota is already known to be used up (why): no request is
    made, and every candidate Hunter would have been asked about fails with that reason
    (syntax checks still run). `hunter` may be None only then.
    `stop`: shared with the enrichments running at the same time for the same batch
    (`batch_quota_stop`): a 429 any of them gets stops the others' next requests too."""
    stop = stop or QuotaStop()
    if quota_error is not None:
        stop.set(quota_error)
    if hunter is None and stop.error is None:
        raise ValueError("a Hunter client is needed unless its quota is known to be spent")
    result = EnrichResult(candidates=candidates,
                          quota_error=None if quota_error is None else stop.error)
    run = _Run(hunter, result, stop)
    semaphore = asyncio.Semaphore(max(1, concurrency))
    # A fixed pool of workers pulling from one iterator: no coroutine per candidate, and the
    # semaphore still bounds the requests in flight if the pool is ever widened.
    pending = iter(candidates)

    async def worker() -> None:
        for candidate in pending:
            async with semaphore:
                try:
                    await run.enrich(candidate)
                except Exception as exc:  # noqa: BLE001 - one candidate must not sink the batch
                    run.fail(candidate, f"unexpected {type(exc).__name__}: {str(exc)[:200]}")

    workers = min(max(1, concurrency), len(candidates))
    await asyncio.gather(*(worker() for _ in range(workers)))
    return result


# Statuses of a stored address worth reusing instead of asking Hunter again.
REUSABLE_STATUSES = ("valid", "accept_all")


def reuse_known_emails(session: Session, candidates: list[CandidateLead]
                       ) -> list[CandidateLead]:
    """Give candidates what the database already knows, instead of asking Hunter again (a
    re-run, a business found by another source): an address without a verification gets the
    stored status of the same address, and a candidate without an address gets the best
    verified one of a lead with its domain. The candidates still to enrich, in order."""
    from models import Lead

    domains = {c.source_record_id: registrable_domain(c.website) for c in candidates
               if not c.email and c.website}
    addresses = {a for c in candidates if c.email and (a := normalise_email(c.email))}
    wanted = {d for d in domains.values() if d}
    if not wanted and not addresses:
        return candidates
    rows = session.execute(
        select(Lead.domain, Lead.email_norm, Lead.email, Lead.email_status,
               Lead.email_confidence)
        .where(Lead.email_status.in_(REUSABLE_STATUSES), Lead.email.is_not(None),
               or_(Lead.domain.in_(sorted(wanted)), Lead.email_norm.in_(sorted(addresses))))
    ).all()
    by_address = {r.email_norm: r for r in rows if r.email_norm}
    by_domain: dict[str, Any] = {}
    for r in sorted(rows, key=lambda r: (r.email_status != "valid", -(r.email_confidence or 0))):
        if r.domain:
            by_domain.setdefault(r.domain, r)
    todo: list[CandidateLead] = []
    for c in candidates:
        known = (by_address.get(normalise_email(c.email) or "") if c.email
                 else by_domain.get(domains.get(c.source_record_id) or ""))
        if known is None:
            todo.append(c)
            continue
        if not c.email:
            c.email = known.email
        c.email_status = known.email_status
        c.email_confidence = c.email_confidence or known.email_confidence
    return todo
