"""The unsubscribe pages and the RFC 8058 one-click body check. A GET shows a page whose button
POSTs; only a POST unsubscribes, whether from that button or from a mail client's one-click
request (body `List-Unsubscribe=One-Click`, urlencoded or multipart/form-data)."""

from __future__ import annotations

from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs

FIELD, VALUE = "List-Unsubscribe", "One-Click"

PAGE_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-robots-tag": "noindex",
    "content-security-policy": "default-src 'none'; form-action 'self'; style-src 'unsafe-inline'",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:32em;margin:4em auto;padding:0 1em}}</style>
</head><body><h1>{title}</h1>{body}</body></html>
"""
CONFIRM_PAGE = _PAGE.format(
    title="Unsubscribe",
    body=(
        "<p>Stop all emails from us to this address?</p>"
        '<form method="post">'
        f'<input type="hidden" name="{FIELD}" value="{VALUE}">'
        '<button type="submit">Unsubscribe</button></form>'
    ),
)
DONE_PAGE = _PAGE.format(
    title="You are unsubscribed",
    body="<p>You will not receive further emails from us at this address.</p>",
)


class OneClickError(Exception):
    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


def check_one_click_body(content_type: str | None, body: bytes) -> None:
    """Raise OneClickError (400/415) unless the body is the one-click form."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            raise OneClickError(400, "Malformed form body") from None
        if fields.get(FIELD) != [VALUE]:
            raise OneClickError(400, f"Expected {FIELD}={VALUE}")
        return
    if media_type == "multipart/form-data":
        if _multipart_field(content_type or "", body) != VALUE:
            raise OneClickError(400, f"Expected {FIELD}={VALUE}")
        return
    raise OneClickError(415, "Expected a form body")


def _multipart_field(content_type: str, body: bytes) -> str | None:
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    try:
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        parts = message.get_payload() if message.is_multipart() else []
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, Message):
                continue
            if part.get_param("name", header="content-disposition") == FIELD:
                payload = part.get_payload(decode=True)
                return payload.decode("ascii").strip() if isinstance(payload, bytes) else None
    except (ValueError, TypeError, UnicodeError, LookupError):
        return None
    return None
