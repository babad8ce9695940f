"""compose(): tracked links, open pixel, footer with sender identity and unsubscribe link,
deterministic Message-ID."""

from __future__ import annotations

import re

import pytest

from leadflow.tokens import TrackingToken, verify
from tasks.outreach.compose import ComposeInputs, TemplateText, compose

pytestmark = pytest.mark.usefixtures("tracking_secret")

TEMPLATE = TemplateText(
    subject="Online booking for {{companyName}}",
    body_text=("Hi {{firstName}},\n\n{{#personalOpening}}I saw {{companyName}} in {{city}}."
               "{{/personalOpening}}\n\nDemo: https://booknex.example/demo\n"
               "Pricing: https://booknex.example/pricing\n\n{{senderName}}"),
)
FACTS = {"company_name": "<script>alert(1)</script> & Co", "contact_name": "Jane Doe",
         "city": "Austin", "industry": "salon"}


def inputs(**changes: object) -> ComposeInputs:
    values: dict[str, object] = {
        "email_id": 41, "campaign_id": 3, "lead_id": 7, "step_number": 1,
        "template": TEMPLATE, "facts": FACTS, "sender_name": "Sam at Booknex",
        "sender_email": "sam@booknex.example",
        "sender_postal_address": "Booknex Ltd, 1 Example St, Springfield",
    }
    values.update(changes)
    return ComposeInputs(**values)  # type: ignore[arg-type]


def hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html)


def test_links_are_rewritten_to_signed_click_urls_with_one_position_per_destination() -> None:
    email = compose(inputs())
    assert email.links == ["https://booknex.example/demo", "https://booknex.example/pricing"]
    text_urls = re.findall(r"https://t\.example\.test/c/(\S+)", email.body_text)
    html_urls = [h.rsplit("/c/", 1)[1] for h in hrefs(email.body_html) if "/c/" in h]
    assert text_urls == html_urls
    assert [verify(t) for t in text_urls] == [TrackingToken("click", 41, 0),
                                              TrackingToken("click", 41, 1)]
    assert "booknex.example/demo" not in email.body_text  # only the tracked URL is a link


def test_html_has_the_open_pixel_last() -> None:
    email = compose(inputs())
    pixel = re.search(r'<img src="https://t\.example\.test/o/([^"]+)\.gif" width="1" '
                      r'height="1" alt=""', email.body_html)
    assert pixel is not None and verify(pixel.group(1)) == TrackingToken("open", 41)
    assert email.body_html.rstrip().endswith(">") and email.body_html.rfind("<img") > \
        email.body_html.rfind("Unsubscribe")


def test_footer_names_the_sender_and_postal_address_with_a_visible_unsubscribe_link() -> None:
    email = compose(inputs())
    unsubscribe = re.search(r"Unsubscribe: (https://t\.example\.test/u/(\S+))", email.body_text)
    assert unsubscribe is not None
    assert verify(unsubscribe.group(2)) == TrackingToken("unsubscribe", 41)
    assert "Sam at Booknex\nBooknex Ltd, 1 Example St, Springfield\n" in email.body_text
    assert f'<a href="{unsubscribe.group(1)}">Unsubscribe</a>' in email.body_html
    assert "Booknex Ltd, 1 Example St, Springfield" in email.body_html


def test_lead_values_are_escaped_in_html() -> None:
    email = compose(inputs())
    assert "<script>" not in email.body_html
    assert "I saw &lt;script&gt;alert(1)&lt;/script&gt; &amp; Co in Austin." in email.body_html
    assert "I saw <script>alert(1)</script> & Co in Austin." in email.body_text


def test_the_ai_opening_replaces_the_templates_fallback_opening() -> None:
    email = compose(inputs(opening="Your Austin reviews are great."))
    assert "\n\nYour Austin reviews are great.\n\n" in email.body_text
    assert "<p>Your Austin reviews are great.</p>" in email.body_html
    assert "I saw" not in email.body_text + email.body_html


def test_full_html_documents_keep_the_footer_inside_body() -> None:
    template = TemplateText("s", "text", "<html><body><p>Hi {{firstName}}</p></body></html>")
    email = compose(inputs(template=template))
    assert email.body_html.endswith("</body></html>")
    assert email.body_html.index("Unsubscribe") < email.body_html.index("</body>")


def test_message_id_is_deterministic_per_campaign_lead_and_step() -> None:
    first, again = compose(inputs()), compose(inputs(email_id=99, opening="Other."))
    assert first.message_id == again.message_id
    assert re.fullmatch(r"<lf\.[0-9a-f]{32}@booknex\.example>", first.message_id)
    assert compose(inputs(step_number=2)).message_id != first.message_id
