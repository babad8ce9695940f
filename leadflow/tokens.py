"""Signed tracking tokens: what a pixel, click or unsubscribe URL carries.

A token names the action, the email and, for clicks, the link's position, and ends with an
HMAC-SHA256 of those (128 bits, base64url). Anything forged, altered or truncated fails
`verify` and the tracking app answers 404 without writing. Tokens hold no personal data.

    o<email_id>.<sig>            open pixel
    c<email_id>-<position>.<sig> click on link <position> of the email
    u<email_id>.<sig>            unsubscribe
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from leadflow.settings import get_settings

MAX_TOKEN_LENGTH = 64
MIN_SECRET_LENGTH = 16  # characters of a tracking secret, at least
# Matched whole (fullmatch): `$` would also match before a trailing newline, so "<token>\n"
# (a URL's %0A) would verify as the token it alters.
_TOKEN = re.compile(r"([ocu])([1-9][0-9]{0,17})(?:-([0-9]{1,4}))?\.([A-Za-z0-9_-]{22})")


@dataclass(frozen=True)
class TrackingToken:
    kind: str  # "open" | "click" | "unsubscribe"
    email_id: int
    link_position: int | None = None


_KINDS = {"o": "open", "c": "click", "u": "unsubscribe"}
_LETTERS = {v: k for k, v in _KINDS.items()}


def _signature(key: bytes, payload: str) -> str:
    mac = _keyed(key).copy()
    mac.update(payload.encode("ascii"))
    return base64.urlsafe_b64encode(mac.digest()[:16]).rstrip(b"=").decode("ascii")


@lru_cache(maxsize=4)
def _keyed(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 with the key already absorbed: copying it costs less than starting over
    (this runs for every request the tracking app gets)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def sign(token: TrackingToken, key: bytes | None = None) -> str:
    key = key or tracking_key()
    payload = f"{_LETTERS[token.kind]}{token.email_id}"
    if token.kind == "click":
        if token.link_position is None:
            raise ValueError("a click token needs a link position")
        payload += f"-{token.link_position}"
    return f"{payload}.{_signature(key, payload)}"


def verify(raw: str, key: bytes | None = None) -> TrackingToken | None:
    """The token's content if its signature is right, else None (never raises)."""
    if len(raw) > MAX_TOKEN_LENGTH:
        return None
    m = _TOKEN.fullmatch(raw)
    if not m:
        return None
    letter, email_id, position, sig = m.groups()
    if (letter == "c") != (position is not None):
        return None
    payload = raw.rsplit(".", 1)[0]
    if not hmac.compare_digest(sig, _signature(key or tracking_key(), payload)):
        return None
    return TrackingToken(_KINDS[letter], int(email_id),
                         int(position) if position is not None else None)


def open_url(email_id: int) -> str:
    return f"{_base()}/o/{sign(TrackingToken('open', email_id))}.gif"


def click_url(email_id: int, position: int) -> str:
    return f"{_base()}/c/{sign(TrackingToken('click', email_id, position))}"


def unsubscribe_url(email_id: int) -> str:
    return f"{_base()}/u/{sign(TrackingToken('unsubscribe', email_id))}"


def _base() -> str:
    return get_settings().tracking_base_url.rstrip("/")


class TrackingSecretError(ValueError):
    """The configured tracking secret is unusable (its value is never in the message)."""


def tracking_key() -> bytes:
    """The HMAC key: `LEADFLOW_TRACKING_SECRET`, else a random key generated once into
    `tracking_secret_file` (mode 0600) so the embedded default works without set-up. A key
    shorter than MIN_SECRET_LENGTH characters is refused: anyone could forge its tokens."""
    settings = get_settings()
    if settings.tracking_secret is not None:
        secret = settings.tracking_secret.get_secret_value()
        if len(secret.strip()) < MIN_SECRET_LENGTH:
            raise TrackingSecretError(
                f"LEADFLOW_TRACKING_SECRET is too short: use {MIN_SECRET_LENGTH} or more random "
                "characters (or unset it to use a generated key)")
        return secret.encode()
    return _key_from_file(settings.tracking_secret_file.resolve())


@lru_cache(maxsize=4)
def _key_from_file(path: Path) -> bytes:
    if not path.exists():
        # Written whole to a private temporary file, then linked into place: a concurrent
        # process either wins the link or reads the winner's complete key.
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text().strip()
    if len(key) < MIN_SECRET_LENGTH:
        raise TrackingSecretError(f"tracking secret in {path} is too short")
    return key.encode()
