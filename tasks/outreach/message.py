"""The MIME message of a composed email: multipart text and HTML, a deterministic Message-ID,
the sender's identity and RFC 8058 one-click unsubscribe headers.

`render_message` writes the bytes directly (the send path); `build_message` builds the same
message with the standard library and is the reference the tests compare against, and the
fallback for addresses with a non-ASCII local part. Neither lets a CR or LF in any lead field
start a new header: display names and subjects are cleaned, addresses and Message-IDs refused.

An internationalised domain is written as IDNA (`jo@café.example` -> `jo@xn--caf-dma.example`),
in the headers as on the envelope (`idna_address`). A non-ASCII local part cannot be written in
ASCII at all: such a message has UTF-8 headers (RFC 6532) and needs a server with SMTPUTF8."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime, formataddr

import idna

from leadflow.tokens import tracking_key, unsubscribe_url

_CONTROL = {i: " " for i in range(32)} | {127: " "}
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class OutgoingEmail:
    email_id: int
    message_id: str
    subject: str
    body_text: str
    body_html: str | None
    from_name: str
    from_email: str
    to_email: str
    to_name: str | None
    date: datetime


def clean_header_text(value: str) -> str:
    """One line of header text: control characters (CR, LF, TAB, NUL...) become spaces."""
    return " ".join(value.translate(_CONTROL).split())


def make_message_id(campaign_id: int, lead_id: int, step_number: int, sender_email: str) -> str:
    """The same email always gets the same Message-ID, so a resend would be recognisable and
    the SMTP server and the benchmarks can count deliveries exactly. It is an HMAC of the
    email's identity under this installation's tracking key: no internal ids are shown, and
    another database sending from the same domain cannot produce the same ids."""
    domain = sender_email.rsplit("@", 1)[-1].strip().lower() or "leadflow.invalid"
    identity = f"message-id:{campaign_id}:{lead_id}:{step_number}".encode()
    digest = hmac.new(tracking_key(), identity, hashlib.sha256).hexdigest()[:32]
    return f"<lf.{digest}@{domain}>"


def idna_address(address: str) -> str:
    """The address with an internationalised domain in its ASCII form (IDNA 2008 with UTS #46
    mapping, as browsers and mail servers resolve it): `jo@café.example` ->
    `jo@xn--caf-dma.example`. The local part is kept as it is; an ASCII domain is left alone.
    Raises ValueError when the domain is not a valid IDNA name."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        ascii_domain = idna.encode(domain.strip(), uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"the domain is not a valid internationalised name ({exc})") from None
    return f"{local}@{ascii_domain}"


def _address(name: str | None, email: str) -> Address:
    local, _, domain = email.strip().rpartition("@")
    if not local or not domain:
        raise ValueError("not an email address")
    return Address(display_name=clean_header_text(name or ""), username=local, domain=domain)


def build_message(email: OutgoingEmail) -> EmailMessage:
    from_email, to_email = idna_address(email.from_email), idna_address(email.to_email)
    # A non-ASCII local part has no ASCII form (an encoded word inside an address is invalid):
    # the headers are then UTF-8, for a server with SMTPUTF8.
    utf8 = not (from_email.isascii() and to_email.isascii())
    msg = EmailMessage(policy=SMTPUTF8 if utf8 else SMTP)
    msg["Message-ID"] = email.message_id
    msg["Date"] = format_datetime(email.date)
    msg["From"] = _address(email.from_name, from_email)
    msg["To"] = _address(email.to_name, to_email)
    msg["Subject"] = clean_header_text(email.subject)
    unsubscribe = unsubscribe_url(email.email_id)
    msg["List-Unsubscribe"] = f"<{unsubscribe}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(email.body_text)
    if email.body_html:
        msg.add_alternative(email.body_html, subtype="html")
    return msg


# --- the fast path ---------------------------------------------------------------------------
# Building an EmailMessage and serialising it with the standard library's generator costs about
# 2 ms per email, most of a sending worker's CPU. Our messages always have the same shape, so
# they are written directly: the same headers, multipart/alternative, UTF-8 quoted-printable
# parts. tests/tasks/outreach/test_message.py checks that both parse to the same message.


def render_message(email: OutgoingEmail) -> bytes:
    """The message as SMTP-ready bytes (CRLF line ends), equivalent to
    `build_message(email).as_bytes()`; falls back to it for a non-ASCII local part."""
    from_email, to_email = idna_address(email.from_email), idna_address(email.to_email)
    if not (from_email.isascii() and to_email.isascii()):
        return build_message(email).as_bytes()
    boundary = "==lf_" + hashlib.sha256(email.message_id.encode()).hexdigest()[:24] + "=="
    headers = [
        f"Message-ID: {_checked(email.message_id)}",
        f"Date: {format_datetime(email.date)}",
        f"From: {_formatted_address(email.from_name, from_email)}",
        f"To: {_formatted_address(email.to_name, to_email)}",
        f"Subject: {_subject(clean_header_text(email.subject))}",
        f"List-Unsubscribe: <{unsubscribe_url(email.email_id)}>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "MIME-Version: 1.0",
    ]
    text_part = _qp_part("plain", email.body_text)
    if not email.body_html:
        return "\r\n".join(headers).encode() + b"\r\n" + text_part
    headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    sep = f"--{boundary}\r\n".encode()
    return b"".join((
        "\r\n".join(headers).encode(), b"\r\n\r\n",
        sep, text_part, b"\r\n",
        sep, _qp_part("html", email.body_html), b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ))


def _qp_part(subtype: str, body: str) -> bytes:
    """A UTF-8 quoted-printable part with its headers. QP escapes every "=", so a boundary
    starting with "==" can never occur inside an encoded body."""
    data = body.replace("\r\n", "\n").replace("\r", "\n")
    if not data.endswith("\n"):
        data += "\n"
    encoded = binascii.b2a_qp(data.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode() + encoded


def _formatted_address(name: str | None, address: str) -> str:
    """`Name <local@domain>`, the name quoted or RFC 2047-encoded as needed."""
    local, _, domain = _checked(address).strip().rpartition("@")
    if not local or not domain or any(c.isspace() for c in local + domain):
        raise ValueError("not an email address")
    return formataddr((clean_header_text(name or ""), f"{local}@{domain}"), charset="utf-8")


def _checked(value: str) -> str:
    """Values that are written into a header as they are (addresses, the Message-ID) may not
    hold a control character: a CR or LF there would start a header of its own."""
    if _CONTROL_CHARS.search(value):
        raise ValueError("control character in an address or Message-ID")
    return value


def _subject(value: str) -> str:
    """ASCII that fits stays as it is; longer text is folded and non-ASCII text becomes RFC 2047
    encoded words, as the standard library's generator does."""
    if value.isascii() and len(value) <= 78 - len("Subject: "):
        return value
    charset = "us-ascii" if value.isascii() else "utf-8"
    return Header(value, charset, header_name="Subject").encode(linesep="\r\n")
