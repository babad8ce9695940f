"""Serves each sandbox business's website. (Placeholder: the website-analysis work replaces this
with realistic pages.)"""

from __future__ import annotations

from starlette.responses import HTMLResponse, Response

from sandbox.dataset import Business


async def site_response(business: Business, host: str, path: str, query: str) -> Response:
    return HTMLResponse(f"<html><head><title>{business.name}</title></head><body></body></html>")
