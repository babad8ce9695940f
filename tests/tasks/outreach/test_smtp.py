"""The SMTP sender against real aiosmtpd servers: TLS and AUTH, connection reuse, reply
classification, and what a broken connection means for the message in flight."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from pydantic import SecretStr

from tasks.outreach.smtp import (
    Delivery,
    ProviderUnavailable,
    SmtpEndpoint,
    SmtpSender,
    classify_reply,
    data_block,
)
from tests.tasks.outreach.mailserver import (
    ACCEPT_AND_DROP,
    DROP,
    SMTP_PASSWORD,
    SMTP_USER,
    TlsFiles,
)

pytest_plugins = ["tests.tasks.outreach.sending_fixtures"]


def _message(n: int) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["Message-ID"] = f"<m{n}@sender.example>"
    msg["From"] = "sam@sender.example"
    msg["To"] = f"to{n}@dest.example"
    msg["Subject"] = f"hello {n}"
    msg.set_content(f"line one\n.a line starting with a dot\n..two dots\nmessage {n}\n")
    return msg.as_bytes()


def _text(content: str) -> str:
    return content.replace("\r\n", "\n")


def _endpoint(port: int, security: str, tls_files: TlsFiles, *, password: str = SMTP_PASSWORD,
              user: str | None = SMTP_USER, ca: Path | None = None) -> SmtpEndpoint:
    return SmtpEndpoint("127.0.0.1", port, security, user, SecretStr(password), timeout_s=5,
                        ca_file=ca or tls_files.cert)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_sends_over_tls_with_auth_on_one_reused_connection(smtp_servers, tls_files, security):
    server = smtp_servers(security=security)
    with SmtpSender(_endpoint(server.port, security, tls_files)) as sender:
        results = [sender.send("bounce@sender.example", f"to{n}@dest.example", _message(n))
                   for n in range(5)]
        assert sender.connections_opened == 1
    assert [r.outcome for r in results] == ["sent"] * 5
    assert [r.message_id for r in server.received] == [f"<m{n}@sender.example>"
                                                        for n in range(5)]
    first = server.received[0]
    assert first.tls and first.auth_user == SMTP_USER
    assert first.rcpt_tos == ["to0@dest.example"] and first.mail_from == "bounce@sender.example"
    # Dot-stuffing undone by the server: the body arrives as written.
    assert ".a line starting with a dot\n..two dots" in _text(first.message.get_content())


@pytest.mark.parametrize("recipient", ["to@dest.example>\r\nRCPT TO:<x@evil.test",
                                       "to@dest.example\nDATA"])
def test_an_address_that_could_smuggle_an_smtp_command_is_refused(smtp_servers, tls_files,
                                                                   recipient):
    server = smtp_servers(security="starttls")
    with SmtpSender(_endpoint(server.port, "starttls", tls_files)) as sender:
        refused = sender.send("bounce@sender.example", recipient, _message(1))
        fine = sender.send("bounce@sender.example", "to@dest.example", _message(2))
    assert refused.outcome == "failed" and fine.outcome == "sent"
    assert [r.rcpt_tos for r in server.received] == [["to@dest.example"]]



def test_an_internationalised_domain_goes_as_idna_without_smtputf8(smtp_servers, tls_files):
    server = smtp_servers(security="starttls")
    with SmtpSender(_endpoint(server.port, "starttls", tls_files)) as sender:
        result = sender.send("sam@sender.example", "jo@café.example", _message(1))
    assert result.outcome == "sent"
    assert [(r.rcpt_tos, r.smtp_utf8) for r in server.received] == [
        (["jo@xn--caf-dma.example"], False)]


@pytest.mark.parametrize("smtputf8", [True, False])
def test_a_non_ascii_local_part_needs_smtputf8(smtp_servers, tls_files, smtputf8):
    server = smtp_servers(security="starttls", smtputf8=smtputf8)
    with SmtpSender(_endpoint(server.port, "starttls", tls_files)) as sender:
        result = sender.send("sam@sender.example", "josé@café.example", _message(1))
        after = sender.send("sam@sender.example", "to2@dest.example", _message(2))
    assert after.outcome == "sent"
    if smtputf8:
        assert result.outcome == "sent"
        assert [(r.rcpt_tos, r.smtp_utf8) for r in server.received] == [
            (["josé@xn--caf-dma.example"], True), (["to2@dest.example"], False)]
    else:
        assert (result.outcome, result.code) == ("failed", None)
        assert "SMTPUTF8" in result.response and "non-ASCII" in result.response
        assert [r.rcpt_tos for r in server.received] == [["to2@dest.example"]]


def test_a_domain_that_is_not_a_valid_idna_name_fails_that_email(smtp_servers, tls_files):
    server = smtp_servers(security="starttls")
    with SmtpSender(_endpoint(server.port, "starttls", tls_files)) as sender:
        result = sender.send("sam@sender.example", "jo@caf\u00e9..example", _message(1))
    assert result.outcome == "failed" and "domain" in result.response
    assert server.received == []

def test_wrong_password_is_provider_unavailable_without_the_password(smtp_servers, tls_files):
    server = smtp_servers(security="starttls")
    sender = SmtpSender(_endpoint(server.port, "starttls", tls_files, password="wrong-pass-xyz"))
    with pytest.raises(ProviderUnavailable) as info:
        sender.send("a@sender.example", "b@dest.example", _message(1))
    assert "535" in str(info.value) and "wrong-pass-xyz" not in str(info.value)
    assert server.received == []


def test_untrusted_certificate_is_refused(smtp_servers, tls_files, tmp_path):
    from tests.tasks.outreach.mailserver import make_self_signed

    other = make_self_signed(tmp_path)  # a different key: the server's cert is not trusted
    server = smtp_servers(security="tls")
    sender = SmtpSender(_endpoint(server.port, "tls", tls_files, ca=other.cert))
    with pytest.raises(ProviderUnavailable, match="CERTIFICATE_VERIFY_FAILED|SSL"):
        sender.send("a@sender.example", "b@dest.example", _message(1))
    assert server.received == []


def test_credentials_are_never_sent_without_tls(smtp_servers, tls_files):
    server = smtp_servers(security="none", auth=False)
    sender = SmtpSender(_endpoint(server.port, "none", tls_files))
    with pytest.raises(ProviderUnavailable, match="without TLS"):
        sender.send("a@sender.example", "b@dest.example", _message(1))


def test_plain_server_without_auth_accepts(smtp_servers, tls_files):
    server = smtp_servers(security="none", auth=False)
    with SmtpSender(_endpoint(server.port, "none", tls_files, user=None)) as sender:
        assert sender.send("a@sender.example", "b@dest.example", _message(1)).outcome == "sent"
    assert server.message_ids() == ["<m1@sender.example>"]


@pytest.mark.parametrize(
    ("stage", "reply", "outcome"),
    [
        ("rcpt", "550 5.1.1 No such user", "bounced"),
        ("rcpt", "553 5.1.3 Bad address syntax", "bounced"),
        ("rcpt", "451 4.3.0 Try again later", "temporary"),
        ("rcpt", "554 5.7.1 Relay access denied", "failed"),
        ("rcpt", "550 5.7.1 Relaying denied", "failed"),
        ("rcpt", "553 5.7.1 sender address rejected", "failed"),
        ("rcpt", "550 5.2.1 Mailbox disabled", "bounced"),
        ("rcpt", "550 No such user here", "bounced"),
        ("mail", "553 5.1.8 Bad sender address", "failed"),
        ("mail", "421 4.3.2 Service shutting down", "temporary"),
        ("data", "552 5.3.4 Message too big", "failed"),
        ("data", "451 4.7.1 Greylisted", "temporary"),
    ],
)
def test_refusals_are_classified_and_the_connection_stays_usable(
    smtp_servers, tls_files, stage, reply, outcome
):
    refused: list[str] = []

    def script(st: str, rcpt: str, n: int) -> str | None:
        if st == stage and not refused:
            refused.append(rcpt)
            return reply
        return None

    server = smtp_servers(security="starttls", script=script)
    with SmtpSender(_endpoint(server.port, "starttls", tls_files)) as sender:
        first = sender.send("a@sender.example", "to0@dest.example", _message(0))
        second = sender.send("a@sender.example", "to1@dest.example", _message(1))
    assert first.outcome == outcome and first.code == int(reply[:3])
    assert reply[4:] in first.response
    assert second.outcome == "sent"
    assert server.message_ids() == ["<m1@sender.example>"]


def test_connection_dropped_before_the_message_reconnects_and_sends_once(smtp_servers,
                                                                         tls_files):
    dropped: list[int] = []

    def script(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "mail" and n == 2 and not dropped:
            dropped.append(n)
            return DROP
        return None

    server = smtp_servers(security="starttls", script=script)
    with SmtpSender(_endpoint(server.port, "starttls", tls_files)) as sender:
        results = [sender.send("a@sender.example", f"to{n}@dest.example", _message(n))
                   for n in range(4)]
        assert sender.connections_opened == 2
    assert [r.outcome for r in results] == ["sent"] * 4
    assert server.message_ids() == [f"<m{n}@sender.example>" for n in range(4)]


def test_no_reply_after_the_message_is_unknown_not_retried(smtp_servers, tls_files):
    def script(stage: str, rcpt: str, n: int) -> str | None:
        return ACCEPT_AND_DROP if stage == "data" and n == 1 else None

    server = smtp_servers(security="starttls", script=script)
    with SmtpSender(_endpoint(server.port, "starttls", tls_files)) as sender:
        results = [sender.send("a@sender.example", f"to{n}@dest.example", _message(n))
                   for n in range(3)]
    assert [r.outcome for r in results] == ["sent", "unknown", "sent"]
    # The server has message 1 once: the sender did not send it again.
    assert server.message_ids() == [f"<m{n}@sender.example>" for n in range(3)]


def test_unreachable_server_is_provider_unavailable(tls_files):
    from tests.conftest import free_port

    sender = SmtpSender(_endpoint(free_port(), "starttls", tls_files))
    with pytest.raises(ProviderUnavailable, match="ConnectionRefused"):
        sender.send("a@sender.example", "b@dest.example", _message(1))


def test_classify_reply_decides_by_the_enhanced_code_when_there_is_one():
    assert classify_reply(250, b"ok", "data") == "sent"
    assert classify_reply(550, b"5.7.1 Relaying denied", "rcpt") == "failed"
    assert classify_reply(553, b"5.7.1 sender address rejected", "rcpt") == "failed"
    assert classify_reply(551, b"5.4.1 no route", "rcpt") == "failed"
    assert classify_reply(554, b"5.1.1 unknown", "rcpt") == "bounced"
    assert classify_reply(550, b"5.1.10 null MX", "rcpt") == "bounced"
    assert classify_reply(550, b"5.1.7 bad sender mailbox", "rcpt") == "failed"
    assert classify_reply(550, b"5.1.1 unknown", "mail") == "failed"
    assert classify_reply(550, b"5.1.1 user unknown", "data") == "bounced"
    assert classify_reply(550, b"5.7.1 spam", "data") == "failed"
    assert classify_reply(550, b"no such user", "rcpt") == "bounced"
    assert classify_reply(421, b"later", "mail") == "temporary"


def test_data_block_stuffs_dots_and_terminates():
    assert data_block(b"a\n.b\r\n..c") == b"a\r\n..b\r\n...c\r\n.\r\n"
    assert Delivery("sent", 250, "ok").summary == "250 ok"
