"""Sending over SMTP: one reused connection per provider (EHLO once, STARTTLS or implicit TLS,
AUTH), one message and recipient per transaction, and each reply classified.

A delivery's outcome is `sent`, `temporary` (4xx, a connection dropped before the message was
handed over: retry later), `bounced` (the server refused the recipient's address), `failed`
(any other 5xx) or `unknown`: the connection broke after the whole message was sent and before
the server answered, so it may have been accepted. `unknown` is never retried blindly.

A 5xx reply with an enhanced status code (RFC 3463) is judged by that code: only 5.1.x (bad
destination address, except 5.1.7/5.1.8 about the sender) and 5.2.1 (mailbox disabled) are
bounces; 5.7.x (policy: relaying denied, sender rejected, spam) and the rest are failures that
say nothing about the recipient's address.

An internationalised domain goes on the envelope as IDNA (ASCII). A non-ASCII local part needs
SMTPUTF8 (RFC 6531): used when the server offers it, else that email alone fails."""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pydantic import SecretStr

from tasks.outreach.message import idna_address

# Basic codes that refuse the recipient's address at RCPT when the reply has no enhanced code
# (RFC 5321 4.2.3).
BOUNCE_CODES = frozenset({550, 551, 553})
# Enhanced codes about the sender's address, not the recipient's (RFC 3463 3.2).
SENDER_ADDRESS_ENHANCED = frozenset({"5.1.7", "5.1.8"})
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_EOLS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")
# The reply each command of a transaction must get to go on.
_UNSAFE_ADDRESS = re.compile(r"[\x00-\x1f\x7f<>]")
_EXPECTED = {"mail": (250,), "rcpt": (250, 251), "data": (354,)}


@dataclass(frozen=True)
class Delivery:
    outcome: str  # sent | temporary | bounced | failed | unknown
    code: int | None
    response: str  # the server's reply (or what broke), one line, no secrets
    enhanced: str | None = None  # the reply's enhanced status code (RFC 3463), e.g. 5.7.1

    @property
    def summary(self) -> str:
        return f"{self.code} {self.response}" if self.code is not None else self.response

    @property
    def policy_refusal(self) -> bool:
        """A permanent refusal for a policy reason (5.7.x): relaying denied, sender rejected,
        authentication needed. Many of them in a row mean the provider, not the recipients."""
        return self.outcome == "failed" and (self.enhanced or "").startswith("5.7.")


class ProviderUnavailable(Exception):
    """Connecting, TLS or authentication failed: nothing was handed over."""


@dataclass(frozen=True)
class SmtpEndpoint:
    host: str
    port: int
    security: str  # starttls | tls | none
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = 15.0
    ca_file: Path | None = None


def _one_line(raw: bytes | str, limit: int = 300) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())[:limit]


def enhanced_code(message: bytes | str) -> str | None:
    """The enhanced status code a reply's text starts with (`5.7.1 Relaying denied`), if any."""
    m = _ENHANCED.match(_one_line(message))
    return m.group(1) if m else None


def classify_reply(code: int, message: bytes | str, stage: str) -> str:
    """The outcome a reply means at a stage of the transaction (mail, rcpt, data). A refusal
    of MAIL FROM is about the sender, never a bounce of the recipient."""
    if 200 <= code < 400:
        return "sent"
    if 400 <= code < 500:
        return "temporary"
    if stage == "mail":
        return "failed"
    enhanced = enhanced_code(message)
    if enhanced is not None and enhanced.startswith("5."):
        recipient = (enhanced.startswith("5.1.") and enhanced not in SENDER_ADDRESS_ENHANCED
                     or enhanced == "5.2.1")
        return "bounced" if recipient else "failed"
    return "bounced" if stage == "rcpt" and code in BOUNCE_CODES else "failed"


def data_block(message: bytes) -> bytes:
    """The message as a DATA block: CRLF line ends, leading dots doubled, ended by <CRLF>.<CRLF>
    (RFC 5321 4.5.2)."""
    data = _LEADING_DOT.sub(b"..", _EOLS.sub(b"\r\n", message))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class _Dropped(Exception):
    """The connection broke before the message was handed over (safe to send again)."""


class SmtpSender:
    """One connection to one server, opened on first use and reused for every message."""

    def __init__(self, endpoint: SmtpEndpoint) -> None:
        self.endpoint = endpoint
        self._conn: smtplib.SMTP | None = None
        self.connections_opened = 0

    def __enter__(self) -> SmtpSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tls_context(self) -> ssl.SSLContext:
        ca = self.endpoint.ca_file
        return ssl.create_default_context(cafile=str(ca) if ca else None)

    def connect(self) -> None:
        ep = self.endpoint
        if ep.username and ep.security not in ("starttls", "tls"):
            raise ProviderUnavailable(
                f"{ep.host}:{ep.port}: refusing to authenticate without TLS (security=none)")
        conn: smtplib.SMTP | None = None
        try:
            if ep.security == "tls":
                conn = smtplib.SMTP_SSL(ep.host, ep.port, timeout=ep.timeout_s,
                                        context=self._tls_context())
            else:
                conn = smtplib.SMTP(ep.host, ep.port, timeout=ep.timeout_s)
            conn.ehlo()
            if ep.security == "starttls":
                conn.starttls(context=self._tls_context())
                conn.ehlo()  # RFC 3207: the session starts over after STARTTLS
            if ep.username:
                password = ep.password.get_secret_value() if ep.password else ""
                conn.login(ep.username, password)
        except (OSError, smtplib.SMTPException) as exc:
            if conn is not None:
                _close_quietly(conn)
            raise ProviderUnavailable(f"{ep.host}:{ep.port}: {_describe(exc)}") from None
        self._conn = conn
        self.connections_opened += 1

    def send(self, envelope_from: str, recipient: str, message: bytes) -> Delivery:
        """Send one message to one recipient. Reconnects once when the connection turns out to
        be dead before the message was handed over; raises ProviderUnavailable when the server
        cannot be reached (then nothing of this message was accepted)."""
        if _UNSAFE_ADDRESS.search(envelope_from) or _UNSAFE_ADDRESS.search(recipient):
            # A CR/LF would end the SMTP command and start another.
            return Delivery("failed", None, "control character or angle bracket in an address")
        try:
            envelope_from, recipient = idna_address(envelope_from), idna_address(recipient)
        except ValueError as exc:
            return Delivery("failed", None, f"bad address: {exc}"[:300])
        utf8 = not (envelope_from.isascii() and recipient.isascii())
        for attempt in (1, 2):
            if self._conn is None:
                self.connect()
            if utf8 and not self._conn.has_extn("smtputf8"):  # type: ignore[union-attr]
                # Without it the address cannot be sent at all (nor encoded as ASCII).
                return Delivery("failed", None, "non-ASCII local part in an address and the "
                                                "server does not offer SMTPUTF8")
            try:
                return self._transaction(envelope_from, recipient, message, utf8)
            except _Dropped as exc:
                self._discard()
                if attempt == 2:
                    return Delivery("temporary", None, f"connection dropped: {exc}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _transaction(self, envelope_from: str, recipient: str, message: bytes,
                     utf8: bool = False) -> Delivery:
        conn = self._conn
        assert conn is not None
        # With SMTPUTF8 the commands carry UTF-8 (as smtplib's mail() sets it; rset() resets it).
        conn.command_encoding = "utf-8" if utf8 else "ascii"
        mail = f"FROM:<{envelope_from}>" + (" SMTPUTF8" if utf8 else "")
        try:
            # docmd with the address in angle brackets, as mail()/rcpt() send it, without
            # their address re-parsing (a tenth of a millisecond per message); the addresses
            # were checked for control characters when the message was rendered.
            for stage, command in (("mail", lambda: conn.docmd("mail", mail)),
                                   ("rcpt", lambda: conn.docmd("rcpt", f"TO:<{recipient}>")),
                                   ("data", lambda: conn.docmd("data"))):
                code, reply = command()
                if code not in _EXPECTED[stage]:
                    return self._refused(code, reply, stage)
            block = data_block(message)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Dropped(_describe(exc)) from None
        try:
            conn.send(block)
            code, reply = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # The whole message went out; the server may have accepted it.
            self._discard()
            return Delivery("unknown", None, f"no reply after the message was sent: "
                                             f"{_describe(exc)}")
        if code == 421:
            self._discard()
        return Delivery(classify_reply(code, reply, "data"), code, _one_line(reply),
                        enhanced_code(reply))

    def _refused(self, code: int, reply: bytes, stage: str) -> Delivery:
        if code == 421 or code == -1:
            self._discard()  # the server is closing the channel
        else:
            try:
                self._conn.rset()  # type: ignore[union-attr]
            except (smtplib.SMTPException, OSError):
                self._discard()
        outcome = classify_reply(code, reply, stage) if code >= 400 else "temporary"
        return Delivery(outcome, code, f"{stage}: {_one_line(reply)}", enhanced_code(reply))

    def _discard(self) -> None:
        if self._conn is not None:
            _close_quietly(self._conn)
        self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.quit()
            _close_quietly(self._conn)
        self._conn = None


def _close_quietly(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        conn.close()


def _describe(exc: BaseException) -> str:
    """What went wrong, for logs and `last_error`: the type and the server's words only (an
    SMTP exception carries the reply, never what the client sent)."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {exc.smtp_code} {_one_line(exc.smtp_error)}"
    return f"{type(exc).__name__}: {_one_line(str(exc), 200)}"


class SenderPool:
    """Open senders by key (a provider id): each worker keeps one connection per provider for
    all its batches, and closes them at the end."""

    def __init__(self) -> None:
        self._senders: dict[int, SmtpSender] = {}

    def get(self, key: int, make_endpoint: Callable[[], SmtpEndpoint]) -> SmtpSender:
        sender = self._senders.get(key)
        if sender is None:
            sender = self._senders[key] = SmtpSender(make_endpoint())
        return sender

    def __enter__(self) -> SenderPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()
