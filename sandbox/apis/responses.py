"""Small request/response pieces every fake API shares: fast JSON, tolerant body parsing,
the shared state handed to route factories."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from sandbox.catalog import Catalog
from sandbox.faults import FaultInjector


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    return JSONBody(content, status_code=status, headers=headers)


async def read_json(request: Request) -> dict[str, Any] | None:
    """The JSON object body, {} when empty, None when it is not a JSON object."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def bad_key(key: str | None) -> bool:
    """Sandbox auth rule: any non-empty key is accepted except ones starting with 'invalid'."""
    return not key or not key.strip() or key.strip().lower().startswith("invalid")


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def as_int(value: Any, default: int) -> int | None:
    """An int parameter (string or number); None when present but not an integer."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_list(value: Any) -> list[str]:
    """A list-of-strings parameter given as a list, a single string or a comma list."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v is not None and str(v).strip()]
    return [str(value)] if str(value).strip() else []


@dataclass
class SandboxState:
    catalog: Catalog
    faults: FaultInjector
    # Hunter verifier: how many times each "pending" address has been asked about.
    verify_calls: dict[str, int] = field(default_factory=dict)
