"""The tracking app's routes: open pixel, click redirect, unsubscribe page and one-click
unsubscribe, health. Every request is untrusted: a token that does not verify, an unknown email
or link, or an oversized or malformed request gets a 4xx and writes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict
from urllib.parse import quote

import anyio
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from leadflow.settings import get_settings
from leadflow.tokens import TrackingToken, tracking_key, verify
from models.db import get_engine
from tracking_app.bots import load_rules
from tracking_app.client_ip import TrustedProxies, client_address, truncated_network
from tracking_app.events import EventWriter, Store, WriterUnavailable
from tracking_app.hits import Hit, Outcome
from tracking_app.limits import MAX_BODY_BYTES, RequestLimits
from tracking_app.recording import unsubscribe_state
from tracking_app.refresher import EngagementRefresher
from tracking_app.stores import AsyncPgStore, ThreadStore
from tracking_app.unsubscribe import (
    CONFIRM_PAGE,
    DONE_PAGE,
    PAGE_HEADERS,
    OneClickError,
    check_one_click_body,
)

# The smallest transparent GIF: 1x1, one transparent colour.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_CACHE = {
    "cache-control": "no-store, no-cache, must-revalidate, max-age=0, private",
    "pragma": "no-cache",
    "expires": "0",
}
USER_AGENT_MAX = 300
GC_THRESHOLDS = (10_000, 10, 10)  # gc.set_threshold while the app runs (default 700, 10, 10)
HEALTH_TIMEOUT_S = 2.0
# How long a pixel or click request that announces a body is read before its 400.
BODY_WAIT_S = 1.0

# Responses without per-request content are built once: building costs more than sending.
PIXEL_RESPONSE = Response(PIXEL_GIF, media_type="image/gif", headers=NO_CACHE)
_NOT_FOUND = PlainTextResponse("Not Found", status_code=404, headers=NO_CACHE)
_BAD_REQUEST = PlainTextResponse("Bad Request", status_code=400, headers=NO_CACHE)
_UNAVAILABLE = PlainTextResponse(
    "Service Unavailable", status_code=503, headers={**NO_CACHE, "retry-after": "1"}
)


@dataclass
class Tracking:
    """What the routes share, owned by the lifespan."""

    engine: Engine
    writer: EventWriter
    refresher: EngagementRefresher
    key: bytes
    trusted: TrustedProxies


class State(TypedDict):
    tracking: Tracking


def create_app(db_url: str | None = None) -> Starlette:
    """The tracking app on `db_url` (default: settings.database_url). Settings (secret,
    trusted proxies, bot rules, group-commit window) are read when the app is created."""
    settings = get_settings()
    url = db_url or settings.database_url
    key = tracking_key()
    rules = load_rules(settings.tracking_bot_rules_file)
    trusted = TrustedProxies(settings.tracking_trusted_proxies)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        engine = get_engine(url)
        refresher = EngagementRefresher(engine, rules,
                                        interval_s=settings.tracking_refresh_interval_s)
        thread_store = ThreadStore(engine, rules)
        store: Store = (AsyncPgStore(url, rules) if engine.dialect.name == "postgresql"
                        else thread_store)
        writer = EventWriter(
            store, thread_store,
            window_s=settings.tracking_commit_window_ms / 1000,
            max_batch=settings.tracking_commit_max_batch,
            max_in_flight=settings.tracking_commit_concurrency,
            commit_timeout_s=settings.tracking_commit_timeout_s,
            on_committed=refresher.mark,
        )
        await refresher.start()
        await writer.start()
        # Everything alive now (modules, SQLAlchemy, settings, rules) lives as long as the app:
        # out of the collector's sight, a full collection no longer walks it. Without this the
        # collections the requests trigger cost about a third of the request path's CPU.
        gc.collect()
        gc.freeze()
        # Requests free what they allocate by reference counting, but 64 requests in flight
        # hold enough at once to cross the default 700 allocations hundreds of times a second,
        # and each older-generation pass walks every long-lived object (caches, connections):
        # ~9 us of collector time per request, measured. Cycles are still collected.
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            yield {"tracking": Tracking(engine, writer, refresher, key, trusted)}
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            await writer.stop()
            await refresher.stop()
            engine.dispose()

    routes = [
        Route("/o/{token}.gif", TrackedHit("open"), methods=["GET", "HEAD"], name="open_pixel"),
        Route("/c/{token}", TrackedHit("click"), methods=["GET", "HEAD"], name="click"),
        Route("/u/{token}", unsubscribe, methods=["GET", "HEAD", "POST"],
              max_body_size=MAX_BODY_BYTES),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(RequestLimits)],
    )
    # No redirect from /c/<token>/ to /c/<token>: Starlette builds that Location from the
    # request's Host header, and a tracking URL with a trailing slash is not ours anyway.
    app.router.redirect_slashes = False
    return app


class TrackedHit:
    """The open pixel and click routes, as plain ASGI apps: they are the hot path (every open of
    every email), and building Starlette's Request and wrapping the endpoint per request cost
    about as much as the work. The responses are the same Starlette Response objects."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _has_body(scope):
            # A pixel or link GET has no body: one announced is a malformed request. Nothing is
            # recorded. A body the server could not parse (a malformed chunk) it has already
            # answered with 400 and closed: then there is nothing left to answer, and answering
            # would log an application error per request, for any client to fill the logs.
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(receive(), BODY_WAIT_S)
                if message["type"] == "http.disconnect":
                    return
            await _BAD_REQUEST(scope, receive, send)
            return
        tracking: Tracking = scope["state"]["tracking"]
        outcome = await _record(scope, tracking, self.kind)
        if isinstance(outcome, Response):
            response = outcome
        elif self.kind == "open":
            response = PIXEL_RESPONSE
        else:
            # The destination comes only from email_links; the query string is never read.
            assert outcome.redirect_url is not None
            response = Response(status_code=302, headers={
                "location": location(outcome.redirect_url), "referrer-policy": "no-referrer",
                **NO_CACHE,
            })
        await response(scope, receive, send)


def _has_body(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" or (name == b"content-length" and value != b"0")
               for name, value in scope["headers"])


def location(url: str) -> str:
    """A Location header value: ASCII as stored; other characters (a path like /café)
    percent-encoded as UTF-8, as browsers do, instead of failing to encode the header."""
    return url if url.isascii() else quote(url, safe="!#$%&'()*+,/:;=?@[]~")


async def unsubscribe(request: Request) -> Response:
    tracking: Tracking = request.state.tracking
    token = _token(request.scope, tracking, "unsubscribe")
    if token is None:
        return _NOT_FOUND
    if request.method != "POST":
        # GET/HEAD only show the button: link scanners follow links, they do not submit forms.
        state = await anyio.to_thread.run_sync(_unsubscribe_state, tracking.engine,
                                               token.email_id)
        if state is None:
            return _NOT_FOUND
        page = DONE_PAGE if state == "unsubscribed" else CONFIRM_PAGE
        return HTMLResponse(page, headers=PAGE_HEADERS)
    try:
        check_one_click_body(request.headers.get("content-type"), await request.body())
    except ClientDisconnect:  # the client went away before its body arrived: nothing to do
        return _BAD_REQUEST
    except OneClickError as exc:
        return PlainTextResponse(exc.reason, status_code=exc.status_code, headers=NO_CACHE)
    outcome = await _record(request.scope, tracking, "unsubscribe", token)
    if isinstance(outcome, Response):
        return outcome
    return HTMLResponse(DONE_PAGE, headers=PAGE_HEADERS)


async def healthz(request: Request) -> Response:
    tracking: Tracking = request.state.tracking
    try:
        await asyncio.wait_for(anyio.to_thread.run_sync(_ping, tracking.engine),
                               HEALTH_TIMEOUT_S)
    except Exception:  # any failure to reach the database means "not healthy"
        return JSONResponse({"status": "database unavailable"}, status_code=503,
                            headers=NO_CACHE)
    # The database answers a read, but events may still not commit (a lock held elsewhere,
    # a full disk): then this instance is not healthy either.
    failing = tracking.writer.failing()
    return JSONResponse({
        "status": "events not being committed" if failing else "ok",
        "events_pending": tracking.writer.pending,
        "events_committed": tracking.writer.events,
        "batches_committed": tracking.writer.batches,
        "figures_pending": tracking.refresher.pending,
    }, status_code=503 if failing else 200, headers=NO_CACHE)


def _token(scope: Scope, tracking: Tracking, kind: str) -> TrackingToken | None:
    token = verify(scope["path_params"]["token"], tracking.key)
    return token if token is not None and token.kind == kind else None


async def _record(
    scope: Scope, tracking: Tracking, kind: str, token: TrackingToken | None = None
) -> Outcome | Response:
    """The committed outcome of this request's hit, or the error response to send."""
    token = token or _token(scope, tracking, kind)
    if token is None:
        return _NOT_FOUND
    try:
        outcome = await tracking.writer.record(_hit(scope, tracking, token))
    except WriterUnavailable:
        return _UNAVAILABLE
    return outcome if outcome.recorded else _NOT_FOUND


def _hit(scope: Scope, tracking: Tracking, token: TrackingToken) -> Hit:
    # One pass over the raw headers (this runs for every hit; Request.headers costs more).
    user_agent: str | None = None
    forwarded: list[str] = []
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = user_agent or value.decode("latin-1") or None
        elif name == b"x-forwarded-for":
            forwarded.append(value.decode("latin-1"))
    peer = scope.get("client")
    address = client_address(
        peer[0] if peer else None, ",".join(forwarded) if forwarded else None, tracking.trusted
    )
    if user_agent is not None:
        if not user_agent.isprintable():
            user_agent = "".join(c for c in user_agent if c.isprintable())
        user_agent = user_agent[:USER_AGENT_MAX]
    return Hit(
        kind=token.kind,
        email_id=token.email_id,
        link_position=token.link_position,
        method=scope["method"],
        user_agent=user_agent,
        client_ip=address,
        ip_network=truncated_network(address) if address is not None else None,
        occurred_at=datetime.now(UTC),
    )


def _unsubscribe_state(engine: Engine, email_id: int) -> str | None:
    with engine.connect() as conn:
        return unsubscribe_state(conn, email_id)


def _ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
