"""The sandbox's Starlette app: fake vendor APIs under their mount paths, each dataset
business's website by Host header, and the /_sandbox admin endpoints (faults, stats, health)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox import sites
from sandbox.apis import apollo, google_places, hunter, openai, pdl
from sandbox.apis.responses import SandboxState, json_response, read_json
from sandbox.catalog import Catalog
from sandbox.faults import FaultConfigError, FaultInjector, parse_faults

log = logging.getLogger("sandbox")


@dataclass
class SandboxConfig:
    businesses: int = 2000
    seed: int = 7
    latency_ms: int = 0
    faults: dict[str, Any] | None = field(default=None)


def _site_error(status: int, retry_after: float | None = 1.0) -> Response:
    return PlainTextResponse(f"{status} error", status_code=status)


class SiteDispatch:
    """Routes requests whose Host is a dataset business's domain (or www. + domain) to that
    business's website instead of the APIs."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = ""
            for key, value in scope["headers"]:
                if key == b"host":
                    host = value.decode("latin-1")
                    break
            hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            business = self.state.catalog.business_for_host(hostname) if hostname else None
            if business is not None:
                request = Request(scope, receive)
                path = scope.get("path", "/")
                query = scope.get("query_string", b"").decode("latin-1")

                # The sandbox speaks plain HTTP; the fetcher says which scheme it asked for.
                scheme = request.headers.get("x-forwarded-proto")

                async def handler(_: Request) -> Response:
                    return await sites.site_response(
                        business, hostname.lower(), path, query, scheme=scheme
                    )

                response = await self.state.faults.run("sites", request, handler, _site_error)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(config: SandboxConfig) -> Starlette:
    """Build the dataset and its indexes, then the app serving them."""
    catalog = Catalog(config.businesses, config.seed)
    faults = FaultInjector(config.latency_ms, parse_faults(config.faults), config.seed)
    state = SandboxState(catalog=catalog, faults=faults)
    # A new fault config starts a new scenario: the verifier's "pending" addresses pend again.
    faults.on_replace.append(state.verify_calls.clear)

    async def set_faults(request: Request) -> Response:
        body = await read_json(request)
        if body is None:
            return json_response({"error": "body must be a JSON object"}, 400)
        try:
            faults.replace(parse_faults(body))
        except FaultConfigError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"faults": faults.config_json()})

    async def get_faults(request: Request) -> Response:
        return json_response({"faults": faults.config_json(), "latency_ms": faults.latency_ms})

    async def stats(request: Request) -> Response:
        return json_response(faults.stats.to_json())

    async def reset_stats(request: Request) -> Response:
        faults.stats.reset()
        return json_response({"ok": True})

    async def health(request: Request) -> Response:
        return json_response({"status": "ok", "businesses": len(catalog.businesses),
                              "seed": catalog.seed})

    async def business(request: Request) -> Response:
        # Ground truth for tests and debugging: the dataset row behind the fake APIs.
        try:
            b = catalog.businesses[int(request.path_params["index"])]
        except (ValueError, IndexError):
            return json_response({"error": "no such business"}, 404)
        return json_response(dataclasses.asdict(b))

    async def site_by_path(request: Request) -> Response:
        domain = request.path_params["domain"].lower()
        b = catalog.business_for_host(domain)
        if b is None:
            return PlainTextResponse("unknown site", status_code=404)
        path = "/" + request.path_params.get("path", "")
        query = request.url.query

        scheme = request.headers.get("x-forwarded-proto")

        async def handler(_: Request) -> Response:
            return await sites.site_response(b, domain, path, query, scheme=scheme)

        return await faults.run("sites", request, handler, _site_error)

    apollo_routes = apollo.routes(state)
    routes = [
        Route("/_sandbox/health", health),
        Route("/_sandbox/faults", set_faults, methods=["POST"]),
        Route("/_sandbox/faults", get_faults, methods=["GET"]),
        Route("/_sandbox/stats", stats),
        Route("/_sandbox/stats/reset", reset_stats, methods=["POST"]),
        Route("/_sandbox/businesses/{index}", business),
        Route("/_sandbox/site/{domain}/{path:path}", site_by_path),
        Route("/_sandbox/site/{domain}", site_by_path),
        Mount("/apollo/api/v1", routes=apollo_routes),
        Mount("/apollo/v1", routes=apollo_routes),
        Mount("/google_places/v1", routes=google_places.routes(state)),
        Mount("/pdl/v5", routes=pdl.routes(state)),
        Mount("/hunter/v2", routes=hunter.routes(state)),
        Mount("/openai/v1", routes=openai.routes(state)),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = state
    app.add_middleware(SiteDispatch, state=state)
    return app
