"""build_message(): the MIME message of a composed email, parsed back with the standard
library's parser: both parts, one-click unsubscribe headers, no header injection."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_string
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default

import pytest

from leadflow.tokens import TrackingToken, verify
from tasks.outreach.compose import ComposedEmail, compose
from tasks.outreach.message import OutgoingEmail, build_message, render_message
from tests.tasks.outreach.test_compose import FACTS, inputs

pytestmark = pytest.mark.usefixtures("tracking_secret")

RENDERERS = {"stdlib": lambda e: build_message(e).as_bytes(), "fast": render_message}


@pytest.fixture(params=sorted(RENDERERS))
def render(request: pytest.FixtureRequest) -> str:
    """Every message test runs on both: the standard library's generator and the fast path."""
    return str(request.param)


def message_of(email: ComposedEmail, to_name: str | None = "Jane Doe",
               render: str = "stdlib") -> EmailMessage:
    outgoing = OutgoingEmail(
        email_id=41, message_id=email.message_id, subject=email.subject,
        body_text=email.body_text, body_html=email.body_html, from_name="Sam at Booknex",
        from_email="sam@booknex.example", to_email="jane@bella.example", to_name=to_name,
        date=datetime(2025, 3, 3, 10, 0, tzinfo=UTC),
    )
    raw = RENDERERS[render](outgoing)
    parsed = BytesParser(policy=default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_message_is_multipart_alternative_with_both_parts_and_unsubscribe_headers(
    render: str,
) -> None:
    email = compose(inputs())
    msg = message_of(email, render=render)
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n").strip() == email.body_text.strip()
    assert html.get_content().replace("\r\n", "\n").strip() == email.body_html.strip()
    unsubscribe = re.fullmatch(r"<(https://t\.example\.test/u/(\S+))>",
                               str(msg["List-Unsubscribe"]))
    assert unsubscribe and verify(unsubscribe.group(2)) == TrackingToken("unsubscribe", 41)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == email.message_id
    assert msg["Subject"] == "Online booking for <script>alert(1)</script> & Co"


def test_header_injection_through_lead_fields_adds_no_header(render: str) -> None:
    evil = "Acme\r\nBcc: victim@x.com"
    email = compose(inputs(facts={**FACTS, "company_name": evil, "contact_name": evil}))
    msg = message_of(email, to_name=evil, render=render)
    assert msg["Bcc"] is None and "victim@x.com" not in str(msg["To"]).split("<")[-1]
    assert [a.addr_spec for a in msg["To"].addresses] == ["jane@bella.example"]
    assert msg["Subject"] == "Online booking for Acme Bcc: victim@x.com"
    header_names = [k.lower() for k in msg]
    assert sorted(header_names) == sorted(
        ["message-id", "date", "from", "to", "subject", "list-unsubscribe",
         "list-unsubscribe-post", "mime-version", "content-type"])


TRICKY = [
    ("plain ascii", "Sam", "Jane Doe", "Hello", "Hi.\n.leading dot\nFrom here\n"),
    ("accents and emoji", "Zoë at Booknex", "José Núñez", "Réservez en ligne 💇",
     "Bonjour José,\nà bientôt ✂️\n"),
    ("quotes and commas", 'Sam "the" Booker, Inc.', "Doe, Jane", 'A "quoted", subject',
     "tab\there and trailing spaces   \n"),
    ("long lines", "S" * 90, "J" * 5, "word " * 40, ("x" * 300 + "\n") * 3),
    ("crlf and control chars", "Sam\r\nX-Evil: 1", "Jane\x00Doe", "Sub\rject\nX-Evil: 2",
     "line one\r\nline two\rline three"),
    ("no display names, empty body", "", None, "s", ""),
]


@pytest.mark.parametrize(("case", "from_name", "to_name", "subject", "text"), TRICKY,
                         ids=[t[0] for t in TRICKY])
def test_fast_path_parses_to_the_same_message_as_the_standard_library(
    case: str, from_name: str, to_name: str | None, subject: str, text: str,
) -> None:
    email = OutgoingEmail(
        email_id=7, message_id="<lf.1.2.3.abcdef@booknex.example>", subject=subject,
        body_text=text, body_html=f"<p>{text}</p>" if case != "no display names, empty body"
        else None, from_name=from_name, from_email="sam@booknex.example",
        to_email="jane@bella.example", to_name=to_name,
        date=datetime(2025, 3, 3, 10, 0, tzinfo=UTC))
    fast_raw = render_message(email)
    ours = BytesParser(policy=default).parsebytes(fast_raw)
    theirs = BytesParser(policy=default).parsebytes(build_message(email).as_bytes())
    assert sorted(k.lower() for k in ours) == sorted(k.lower() for k in theirs)
    for name in theirs:
        if name.lower() not in ("content-type", "content-transfer-encoding"):  # boundary, QP
            assert str(ours[name]) == str(theirs[name]), name
    assert ours.get_content_type() == theirs.get_content_type()
    for kind in (("plain",), ("html",)):
        mine, reference = ours.get_body(kind), theirs.get_body(kind)
        assert (mine is None) == (reference is None)
        if mine is not None and reference is not None:
            assert mine.get_content() == reference.get_content()
    assert all(len(line) <= 998 for line in fast_raw.split(b"\r\n"))
    assert b"\n" not in fast_raw.replace(b"\r\n", b"")  # CRLF line ends only


@pytest.mark.parametrize("field", ["to_email", "from_email", "message_id"])
def test_a_control_character_in_an_address_or_message_id_is_refused(
    render: str, field: str,
) -> None:
    values = dict(email_id=7, message_id="<lf.abc@booknex.example>", subject="s",
                  body_text="b", body_html=None, from_name="Sam", from_email="sam@b.example",
                  to_email="jane@bella.example", to_name="Jane",
                  date=datetime(2025, 3, 3, 10, 0, tzinfo=UTC))
    values[field] = "victim@x.example\r\nBcc: attacker@evil.test"
    with pytest.raises(ValueError):
        RENDERERS[render](OutgoingEmail(**values))  # type: ignore[arg-type]


def test_message_ids_are_stable_per_email_and_differ_between_installations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leadflow.settings import reset_settings_cache
    from tasks.outreach.message import make_message_id

    first = make_message_id(3, 17, 2, "sam@booknex.example")
    assert first == make_message_id(3, 17, 2, "Sam@Booknex.example")
    assert first != make_message_id(3, 17, 1, "sam@booknex.example")
    assert re.fullmatch(r"<lf\.[0-9a-f]{32}@booknex\.example>", first)
    monkeypatch.setenv("LEADFLOW_TRACKING_SECRET", "another-installation-key-0123456789")
    reset_settings_cache()
    try:
        assert make_message_id(3, 17, 2, "sam@booknex.example") != first
    finally:
        reset_settings_cache()


@pytest.mark.parametrize(("to_email", "addr_spec"), [
    ("jo@café.example", "jo@xn--caf-dma.example"),
    ("josé@Café.Example", "josé@xn--caf-dma.example"),
])
def test_an_internationalised_domain_is_written_as_idna(
    render: str, to_email: str, addr_spec: str
) -> None:
    email = OutgoingEmail(
        email_id=7, message_id="<lf.abc@booknex.example>", subject="Réservez", body_text="b",
        body_html=None, from_name="Zoë", from_email="zoë@booknex.example", to_email=to_email,
        to_name="José Núñez", date=datetime(2025, 3, 3, 10, 0, tzinfo=UTC))
    raw = RENDERERS[render](email)
    headers = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    to_line = next(h for h in headers.replace("\r\n ", " ").split("\r\n")
                   if h.startswith("To:"))
    assert f"<{addr_spec}>" in to_line  # the address itself never encoded (RFC 2047 5)
    parsed = message_from_string(raw.decode("utf-8"), policy=default)
    assert [a.addr_spec for a in parsed["To"].addresses] == [addr_spec]
    assert [a.display_name for a in parsed["To"].addresses] == ["José Núñez"]
    assert [a.addr_spec for a in parsed["From"].addresses] == ["zoë@booknex.example"]
