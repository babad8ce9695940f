"""What the sending tests are made of: an aiosmtpd handler that records what it receives and
answers from a script (refusals, dropped connections), a self-signed certificate for loopback,
and builders for campaigns, providers and composed (`queued`) emails. The fixtures that start
and stop these live in sending_fixtures.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, message_from_string
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

SMTP_USER = "relay-user"
SMTP_PASSWORD = "s3cret-relay-pass-do-not-log"
PASSWORD_REF = "relay_main"
# Monday 3 March 2025, 10:00 UTC: inside any default window.
T0 = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
DROP = "DROP"  # a script's answer: close the connection instead of replying
ACCEPT_AND_DROP = "ACCEPT_AND_DROP"  # DATA only: keep the message, close without replying

# (stage, recipient, number of messages this server accepted so far) -> reply, DROP or None
Script = Callable[[str, str, int], str | None]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    auth_user: str | None
    tls: bool
    smtp_utf8: bool = False  # MAIL FROM had the SMTPUTF8 parameter

    @property
    def message(self) -> Any:
        if self.smtp_utf8:  # headers may hold UTF-8 (RFC 6532)
            return message_from_string(self.data.decode("utf-8"), policy=default_policy)
        return message_from_bytes(self.data, policy=default_policy)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class RecordingHandler:
    script: Script | None = None
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _scripted(self, server: Any, stage: str, rcpt: str) -> str | None:
        if self.script is None:
            return None
        with self.lock:
            n = len(self.received)
        return self.script(stage, rcpt, n)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        reply = self._scripted(server, "mail", "")
        if reply == DROP:
            server.transport.close()
            return "421 closing"
        if reply:
            return reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        reply = self._scripted(server, "rcpt", address)
        if reply == DROP:
            server.transport.close()
            return "421 closing"
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        reply = self._scripted(server, "data", rcpt)
        if reply == DROP:
            server.transport.close()
            return "421 closing"
        if reply and reply != ACCEPT_AND_DROP:
            return reply
        auth = session.auth_data if session.authenticated else None
        user = auth.login.decode() if isinstance(auth, LoginPassword) else None
        tls = server.transport.get_extra_info("ssl_object") is not None
        with self.lock:
            self.received.append(Received(
                envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content),
                user, tls, bool(envelope.smtp_utf8)))
            n = len(self.received)
        if reply == ACCEPT_AND_DROP:
            # Taken, but the client never hears so: it cannot know the message went through.
            await asyncio.sleep(0)
            server.transport.close()
            return "250 OK"
        return f"250 2.0.0 Ok: queued as {n}"

    def message_ids(self) -> list[str]:
        with self.lock:
            return [r.message_id for r in self.received]


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                   auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
          and auth_data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@dataclass
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def make_self_signed(directory: Path) -> TlsFiles:
    """A certificate for 127.0.0.1 and localhost, signed by its own key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leadflow test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(directory / "smtp-cert.pem", directory / "smtp-key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


@dataclass
class SmtpServer:
    controller: Controller
    handler: RecordingHandler
    port: int
    security: str

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def message_ids(self) -> list[str]:
        return self.handler.message_ids()


@contextmanager
def plain_relay() -> Iterator[SmtpServer]:
    """A recording SMTP server on loopback without TLS or AUTH, for tests that only count and
    read what arrives (the flows', the cluster's, the tracking app's end to end)."""
    from tests.conftest import free_port

    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, auth_require_tls=False)
    controller.start()
    try:
        yield SmtpServer(controller, handler, port, "none")
    finally:
        controller.stop()


# --- builders ----------------------------------------------------------------------------


@dataclass
class Outreach:
    """Rows of one test: a campaign with a sequence, leads, providers, composed emails."""

    db_url: str

    def campaign(self, *, steps: tuple[int, ...] = (0, 3, 5), status: str = "active",
                 timezone: str = "UTC", window: tuple[int, int] = (0, 0),
                 weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6), name: str = "c") -> int:
        """A campaign whose sequence has one step per delay (days); the window (start, end)
        local hours, (0, 0) = all day."""
        from models import Campaign, Sequence, SequenceStep
        from models.db import session_scope

        statuses = ["contacted", "follow_up_1", "follow_up_2", "follow_up_3"]
        with session_scope(self.db_url) as s:
            seq = Sequence(name=f"seq-{name}")
            s.add(seq)
            s.flush()
            for i, delay in enumerate(steps, start=1):
                s.add(SequenceStep(sequence_id=seq.id, step_number=i, name=f"step {i}",
                                   delay_days=delay, lead_status=statuses[i - 1]))
            campaign = Campaign(
                name=name, status=status, timezone=timezone, sequence_id=seq.id,
                send_window_start_hour=window[0], send_window_end_hour=window[1],
                send_weekdays=list(weekdays), sender_name="Sam Sender",
                sender_email="sam@sender.example", sender_postal_address="1 Example St",
            )
            s.add(campaign)
            s.flush()
            return campaign.id

    def leads(self, n: int, *, prefix: str = "lead", email: bool = True) -> list[int]:
        from models import Lead
        from models.db import session_scope

        with session_scope(self.db_url) as s:
            rows = [Lead(company_name=f"Salon {prefix} {i}", contact_name=f"Jo {i}",
                         email=f"{prefix}{i}@dest{i % 7}.example" if email else None,
                         source="apollo") for i in range(n)]
            s.add_all(rows)
            s.flush()
            return [r.id for r in rows]

    def provider(self, name: str, port: int, *, security: str = "starttls",
                 auth: bool = True, hourly: int = 1000, daily: int = 10000,
                 priority: int = 100, **fields: Any) -> int:
        from models import SmtpProvider
        from models.db import session_scope

        with session_scope(self.db_url) as s:
            values = {"username": SMTP_USER if auth else None,
                      "password_ref": PASSWORD_REF if auth else None, **fields}
            row = SmtpProvider(name=name, host="127.0.0.1", port=port, security=security,
                               hourly_limit=hourly, daily_limit=daily, priority=priority,
                               **values)
            s.add(row)
            s.flush()
            return row.id

    def queue(self, campaign_id: int, lead_ids: list[int], *, at: dt.datetime = T0,
              step: int = 1) -> list[int]:
        """Composed emails (status queued) of one step for these leads, with every later step
        scheduled, as enqueue + compose leave them."""
        from sqlalchemy import select

        from models import Email, Lead
        from models.db import session_scope
        from tasks.outreach.message import make_message_id
        from tasks.outreach.queue import enqueue_sequences

        enqueue_sequences(self.db_url, campaign_id, lead_ids, at)
        with session_scope(self.db_url) as s:
            emails = list(s.scalars(select(Email).where(
                Email.campaign_id == campaign_id, Email.lead_id.in_(lead_ids),
                Email.step_number == step).order_by(Email.id)))
            names = dict(s.execute(select(Lead.id, Lead.company_name)
                                   .where(Lead.id.in_(lead_ids))).all())
            for e in emails:
                e.status = "queued"
                e.scheduled_at = at
                e.message_id = make_message_id(campaign_id, e.lead_id, e.step_number,
                                               "sam@sender.example")
                e.subject = f"Bookings for {names[e.lead_id]}"
                e.body_text = f"Hi {names[e.lead_id]},\n.leading dot line\nBye"
                e.body_html = f"<p>Hi {names[e.lead_id]} &amp; co</p>"
            return [e.id for e in emails]

    def emails(self, ids: list[int] | None = None) -> dict[int, Any]:
        """id -> Email row (detached) for the given ids, or every email."""
        from sqlalchemy import select

        from models import Email
        from models.db import session_scope

        with session_scope(self.db_url) as s:
            query = select(Email).order_by(Email.id)
            if ids is not None:
                query = query.where(Email.id.in_(ids))
            return {e.id: e for e in s.scalars(query)}
