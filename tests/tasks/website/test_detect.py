"""Booking-tool detection, forms, keywords, charsets and maturity on hand-written fixture pages,
and agreement of the fast path with the BeautifulSoup reference."""

from __future__ import annotations

import json

import pytest

from tasks.website.detect import MATURITY_POINTS, analyse_html, decode_html
from tasks.website.signatures import load_signatures
from tests.conftest import FIXTURES

SITES = FIXTURES / "sites"
EMBEDS: dict[str, dict[str, str]] = json.loads((SITES / "booking_embeds.json").read_text())
TEMPLATE = (SITES / "embed_page.html").read_text()
URL = "https://mapleandfern.com/"
CASES = [(tool, kind) for tool, kinds in sorted(EMBEDS.items()) for kind in sorted(kinds)]


def test_signature_table_covers_at_least_28_tools_including_the_named_ones() -> None:
    names = set(load_signatures().booking_names)
    assert len(names) >= 28
    assert set(EMBEDS) <= names


@pytest.mark.parametrize("engine", ["fast", "bs4"])
@pytest.mark.parametrize(("tool", "kind"), CASES)
def test_each_booking_tool_is_detected_in_each_embed_style(
    tool: str, kind: str, engine: str
) -> None:
    page = TEMPLATE.replace("{embed}", EMBEDS[tool][kind])
    facts = analyse_html(page.encode(), URL, "text/html; charset=utf-8", engine=engine)  # type: ignore[arg-type]
    assert facts.booking_tools == [tool]


def test_mentions_share_buttons_and_vendor_homepages_are_not_booking_tools() -> None:
    facts = analyse_html((SITES / "decoys.html").read_bytes(), "https://townsquarebarbers.com/")
    assert facts.booking_tools == []
    assert facts.social_links == []  # share/intent links are not profiles
    assert facts.has_analytics is False


def test_wix_book_online_path_counts_only_on_wix_sites() -> None:
    wix = analyse_html((SITES / "wix_book_online.html").read_bytes(), "https://lotusnails.com/")
    assert wix.booking_tools == ["wix_bookings"]
    plain = analyse_html((SITES / "decoys.html").read_bytes(), "https://lotusnails.com/")
    assert "wix_bookings" not in plain.booking_tools


def test_contact_form_is_detected() -> None:
    facts = analyse_html((SITES / "forms_contact.html").read_bytes(), URL)
    assert facts.has_contact_form is True
    assert facts.signals["forms"] == {"contact": 1}


def test_search_and_newsletter_forms_are_not_contact_forms() -> None:
    facts = analyse_html((SITES / "forms_not_contact.html").read_bytes(), URL)
    assert facts.has_contact_form is False
    assert facts.signals["forms"] == {"newsletter": 1, "search": 2}


def test_phone_booking_wording_and_table_layout_on_an_old_site() -> None:
    facts = analyse_html((SITES / "phone_booking_table.html").read_bytes(), "http://oakdental.com/")
    assert facts.phone_booking is True
    assert facts.booking_tools == []
    assert facts.signals["legacy_markup"] > 0
    assert "modern_markup" not in facts.signals["maturity_points"]
    assert facts.digital_maturity == 0


def test_booking_keywords_counted_in_visible_text_longest_phrase_once() -> None:
    html = (
        "<html><head><title>Book now</title><script>var a='book now';</script></head><body>"
        "<p>Book an appointment today. <b>Book</b> now!</p><style>.book-now{}</style>"
        "<p>Reservations welcome; appointment reminders by SMS.</p><p>Facebook</p></body></html>"
    )
    # "book an appointment", "book now" (across tags), "reservations", "appointment"
    assert analyse_html(html, URL).booking_keyword_count == 4


@pytest.mark.parametrize(
    ("name", "codec", "expected"),
    [
        ("charset_windows1252.html", "cp1252", "Señora Núñez’s"),
        ("charset_iso88591.html", "cp1252", "Peluquería Ñandú"),
        ("charset_shift_jis.html", "cp932", "さくら美容室"),
    ],
)
def test_non_utf8_pages_are_decoded_from_their_meta_declaration(
    name: str, codec: str, expected: str
) -> None:
    text, used = decode_html((SITES / name).read_bytes(), "text/html")
    assert used == codec
    assert expected in text


def test_header_charset_wins_and_undecodable_bytes_never_crash() -> None:
    body = "<html><body><p>Caf\u00e9 book now</p></body></html>".encode("cp1252") + b"\x81\xff"
    text, used = decode_html(body, "text/html; charset=windows-1252")
    assert used == "cp1252" and "Café" in text
    facts = analyse_html(b"\x81\x00garbage<<>>\x00" + body, URL, "text/html; charset=bogus")
    assert facts.booking_keyword_count == 1


@pytest.mark.parametrize(
    "label", ["hex", "base64", "zlib", "rot13", "undefined", "idna", "punycode",
              "unicode_escape", "utf-7"],
)
def test_charset_labels_that_are_python_codecs_but_not_charsets_are_ignored(label: str) -> None:
    body = "<html><body><p>Caf\u00e9 \\x41 +AGE- book now</p></body></html>".encode()
    meta = f'<html><head><meta charset="{label}"></head>'.encode() + body[6:]
    for page, content_type in ((body, f"text/html; charset={label}"), (meta, "text/html")):
        text, used = decode_html(page, content_type)
        assert used == "utf-8" and "Caf\u00e9 \\x41 +AGE- book now" in text
        assert analyse_html(page, URL, content_type).booking_keyword_count == 1


def test_shift_jis_page_counts_japanese_booking_keywords() -> None:
    facts = analyse_html((SITES / "charset_shift_jis.html").read_bytes(), URL)
    assert facts.booking_keyword_count == 2  # ご予約, 予約


def test_maturity_components_add_up_on_a_complete_site() -> None:
    facts = analyse_html((SITES / "maturity_full.html").read_bytes(), "https://willowyoga.com/")
    assert facts.booking_tools == ["mindbody"]
    assert facts.has_analytics and facts.has_viewport and facts.has_structured_data
    assert facts.social_links == ["facebook", "instagram"]
    assert facts.signals["maturity_points"] == MATURITY_POINTS
    assert facts.digital_maturity == 100
    http = analyse_html((SITES / "maturity_full.html").read_bytes(), "http://willowyoga.com/")
    assert http.digital_maturity == 100 - MATURITY_POINTS["https"]


def test_empty_and_garbage_input_give_empty_facts() -> None:
    for body in (b"", b"   ", b"\x00\x00", b"<<<>>>", "<html><body>\ud800</body></html>".encode(
        "utf-8", "surrogatepass"
    )):
        facts = analyse_html(body, URL)
        assert facts.booking_tools == [] and facts.digital_maturity == 15  # https only


@pytest.mark.filterwarnings("ignore:.*XML:UserWarning")  # bs4: "this looks like XML"
@pytest.mark.parametrize("engine", ["fast", "bs4"])
def test_xhtml_page_opening_with_an_xml_declaration_is_analysed(engine: str) -> None:
    page = TEMPLATE.replace("{embed}", "<p>Book now</p>" + EMBEDS["calendly"]["script"])
    xhtml = '<?xml version="1.0" encoding="UTF-8"?>\n' + page
    expected = analyse_html(page.encode(), URL, "text/html; charset=utf-8", engine=engine)  # type: ignore[arg-type]
    for body in (xhtml.encode(), xhtml):
        facts = analyse_html(body, URL, "application/xhtml+xml", engine=engine)  # type: ignore[arg-type]
        assert facts.booking_tools == ["calendly"]
        assert facts.booking_keyword_count == expected.booking_keyword_count > 0
        assert facts.digital_maturity == expected.digital_maturity


@pytest.mark.parametrize("depth", [300, 5000])
def test_what_follows_deeply_nested_markup_is_still_analysed(depth: int) -> None:
    """Unclosed tags nest without bound; libxml2 gives up building its tree at 256 levels."""
    embed = "<p>Book now</p>" + EMBEDS["calendly"]["script"]
    for nest in ("<span>x" * depth, "<div>" * depth + "x" + "</div>" * depth):
        page = TEMPLATE.replace("{embed}", nest + embed).encode()
        fast = analyse_html(page, URL)
        assert fast.booking_tools == ["calendly"] and fast.booking_keyword_count >= 1
        assert fast == analyse_html(page, URL, engine="bs4")


def test_unknown_engine_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="engine"):
        analyse_html("<html></html>", URL, engine="regex")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", sorted(p.name for p in SITES.glob("*.html")))
def test_fast_path_agrees_with_bs4_on_fixture_pages(path: str) -> None:
    body = (SITES / path).read_bytes()
    assert analyse_html(body, URL) == analyse_html(body, URL, engine="bs4")


def test_fast_path_agrees_with_bs4_on_generated_sandbox_pages() -> None:
    from sandbox.sites import render_site, sample_business

    for i in range(300):
        business = sample_business(i)
        body, content_type = render_site(business)
        url = f"https://{business.domain}/"
        fast = analyse_html(body, url, content_type)
        assert fast == analyse_html(body, url, content_type, engine="bs4"), business.domain
