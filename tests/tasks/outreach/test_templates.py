"""Templates: variables with fallbacks, nothing but variables between braces, escaped HTML,
links numbered once for both parts."""

from __future__ import annotations

import pytest

from tasks.outreach.templates import (
    TemplateError,
    compile_template,
    first_name,
    render_template,
    validate_template,
)

BODY = "Hi {{firstName}},\n\nI work with {{industry}} businesses in {{city}}.\n\n{{senderName}}"


def render(subject: str, body: str, html: str | None = None, **values: str | None):
    return render_template(compile_template(subject, body, html), values)


def test_missing_values_fall_back_instead_of_leaving_blanks() -> None:
    out = render("Bookings at {{companyName}}", BODY, companyName=None, firstName="",
                 industry="  ", city=None, senderName="Sam")
    assert out.subject == "Bookings at your business"
    assert out.body_text.startswith("Hi there,\n")
    assert "I work with local businesses in your area." in out.body_text
    assert "Hi ," not in out.body_text and "Hi ," not in out.body_html


def test_inline_default_wins_over_the_built_in_fallback() -> None:
    out = render("Hello {{contactName|friend}}", "Hi {{firstName | team}}, {{city}}",
                 contactName=None, firstName=None, city="Austin")
    assert out.subject == "Hello friend"
    assert out.body_text == "Hi team, Austin"


def test_values_are_substituted_on_one_line() -> None:
    out = render("{{companyName}}", "Hi {{firstName}}", companyName="Acme\r\nBcc: x@y.z",
                 firstName="Jo\n\nnew paragraph")
    assert out.subject == "Acme Bcc: x@y.z"
    assert out.body_text == "Hi Jo new paragraph"


@pytest.mark.parametrize(
    ("contact", "expected"),
    [("Jane Smith", "Jane"), ("Dr. Jane Smith", "Jane"), ("mrs  ANNA   Lee", "ANNA"),
     ("Dr.", None), ("J. Smith", None), ("", None), (None, None)],
)
def test_first_name_skips_honorifics_and_initials(contact: str | None,
                                                  expected: str | None) -> None:
    assert first_name(contact) == expected


@pytest.mark.parametrize(
    ("subject", "body", "problem"),
    [
        ("Hi {{companyNme}}", "x", "unknown variable {{companyNme}}"),
        ("Hi", "{{ lead.email }}", "is not a variable"),
        ("Hi", "{{ companyName.__class__.__mro__ }}", "is not a variable"),
        ("Hi", "{{ 7*7 }}", "is not a variable"),
        ("Hi", "{% for x in range(3) %}x{% endfor %}", "stray '{%'"),
        ("Hi", "{{companyName}", "stray '{{'"),
        ("Hi", "{{#personalOpening}}unclosed", "is not closed"),
        ("Hi", "{{personalOpening}}", "needs a fallback"),
        ("Hi {{#personalOpening}}x{{/personalOpening}}", "x", "belongs in the body"),
        ("", "x", "subject: empty"),
        ("Hi", "  ", "body_text: empty"),
    ],
)
def test_validate_template_reports_what_cannot_render(subject: str, body: str,
                                                      problem: str) -> None:
    problems = validate_template(subject, body)
    assert any(problem in p for p in problems), problems
    with pytest.raises(TemplateError):
        compile_template(subject, body)


def test_validate_template_accepts_every_known_variable() -> None:
    body = ("{{companyName}} {{contactName}} {{firstName}} {{industry}} {{city}} "
            "{{bookingTool}} {{website}} {{domain}} {{senderName}} {{senderEmail}}\n"
            "{{#personalOpening}}Hello {{city}}{{/personalOpening}}")
    assert validate_template("{{companyName}}", body, f"<p>{body}</p>") == []


def test_template_text_is_never_evaluated_and_values_are_never_expanded() -> None:
    # A value that looks like template syntax stays literal text: values are not templates.
    out = render("{{companyName}}", "{{companyName}} / {{city}}",
                 companyName="{{senderEmail}} {{ ''.__class__ }}", city="{% if 1 %}x{% endif %}")
    assert out.body_text == "{{senderEmail}} {{ ''.__class__ }} / {% if 1 %}x{% endif %}"


def test_html_escapes_every_lead_value() -> None:
    evil = "<script>alert(1)</script> & Co"
    out = render("{{companyName}}", "Hello {{companyName}}",
                 '<p title="x">Hello {{companyName}}, "{{city}}"</p>', companyName=evil,
                 city='"><img src=x onerror=alert(1)>')
    assert "<script>" not in out.body_html and "<img" not in out.body_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in out.body_html
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in out.body_html
    assert out.body_text == f"Hello {evil}"  # plain text stays as the lead wrote it


def test_variable_inside_a_url_attribute_is_refused() -> None:
    problems = validate_template("s", "b", '<a href="{{website}}">site</a>')
    assert problems and "URL attribute" in problems[0]
    assert validate_template("s", "b", '<a href="https://x.example/?q={{city}}">x</a>')


def test_text_body_becomes_html_paragraphs_when_there_is_no_html_body() -> None:
    out = render("s", "Hi {{firstName}},\n\nLine one\nline two & more\n\n{{senderName}}",
                 firstName="Jo", senderName="Sam <Booknex>")
    assert out.body_html == ("<p>Hi Jo,</p>\n<p>Line one<br>\nline two &amp; more</p>\n"
                             "<p>Sam &lt;Booknex&gt;</p>")


def test_links_get_one_position_per_destination_across_both_parts() -> None:
    text = ("Demo: https://booknex.example/demo. Pricing (https://booknex.example/pricing), "
            "demo again https://booknex.example/demo")
    html = ('<a href="https://booknex.example/pricing">p</a> '
            "<a href='https://booknex.example/demo'>d</a> "
            '<a href="https://new.example/x?a=1&amp;b=2">n</a> '
            '<a href="mailto:sam@booknex.example">mail</a>')
    template = compile_template("s", text, html)
    assert template.links == ("https://booknex.example/demo", "https://booknex.example/pricing",
                              "https://new.example/x?a=1&b=2")
    out = render_template(template, {}, ["C0", "C1", "C2"])
    assert out.body_text == "Demo: C0. Pricing (C1), demo again C0"
    assert out.body_html == ('<a href="C1">p</a> <a href=\'C0\'>d</a> <a href="C2">n</a> '
                             '<a href="mailto:sam@booknex.example">mail</a>')


def test_links_in_text_made_html_keep_their_original_words() -> None:
    template = compile_template("s", "See https://booknex.example/demo?a=1&b=2")
    out = render_template(template, {}, ["https://t.example/c/1"])
    assert out.body_html == ('<p>See <a href="https://t.example/c/1">'
                             "https://booknex.example/demo?a=1&amp;b=2</a></p>")


def test_lead_values_never_become_tracked_links() -> None:
    template = compile_template("s", "Your site {{website}}")
    assert template.links == ()
    out = render_template(template, {"website": "https://evil.example/"})
    assert out.body_text == "Your site https://evil.example/"
    assert "<a " not in out.body_html


def test_opening_block_uses_the_ai_sentence_or_its_fallback() -> None:
    template = compile_template(
        "s", "Hi,\n\n{{#personalOpening}}I saw {{companyName}} in {{city}}.{{/personalOpening}}")
    assert template.uses_opening
    values = {"companyName": "Bella", "city": None}
    assert render_template(template, values).body_text == "Hi,\n\nI saw Bella in your area."
    ai = render_template(template, values, opening="Loved the <b>reviews</b>\nat Bella.")
    assert ai.body_text == "Hi,\n\nLoved the <b>reviews</b> at Bella."
    assert "Loved the &lt;b&gt;reviews&lt;/b&gt; at Bella." in ai.body_html
    assert not compile_template("s", "no opening here").uses_opening
