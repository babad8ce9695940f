"""Size limits on untrusted requests, checked before any route runs: an oversized path, query
string or header block gets a clean 414/431 (bodies are capped by Starlette's max_body_size,
413). The server's own parser (uvicorn/h11) answers 400 to what it cannot parse at all."""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_TARGET_BYTES = 1024  # path + query: a tracking URL is under 100
MAX_HEADER_BYTES = 8192
MAX_HEADERS = 64
MAX_BODY_BYTES = 1024  # an unsubscribe POST body is 26 bytes (multipart: a few hundred)

_TOO_LONG = PlainTextResponse("URI Too Long", status_code=414)
_HEADERS_TOO_LARGE = PlainTextResponse("Request Header Fields Too Large", status_code=431)


class RequestLimits:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if len(scope.get("raw_path") or b"") + len(scope["query_string"]) > MAX_TARGET_BYTES:
                await _TOO_LONG(scope, receive, send)
                return
            headers = scope["headers"]
            if (len(headers) > MAX_HEADERS
                    or sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES):
                await _HEADERS_TOO_LARGE(scope, receive, send)
                return
        await self.app(scope, receive, send)
