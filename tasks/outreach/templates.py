"""Email templates: `{{variable}}` substitution with fallbacks, for text and HTML.

Deliberately not a template language: the text between `{{ }}` can only name one of
`VARIABLES` (with an optional inline default, `{{firstName|there}}`) or open/close the
`{{#personalOpening}}fallback{{/personalOpening}}` block, so template text can never run code
or reach Python objects. Anything else is a problem reported by `validate_template` when a
template is saved, and a `TemplateError` when one is compiled; an unknown variable never
renders as a blank.

Compiling also finds the template's links (http(s) URLs in the text body, `href` values in the
HTML body), numbered by first appearance, so one destination has one position in both parts.
In HTML every substituted value is escaped; a template without an HTML body gets one made from
its text (paragraphs, line breaks, links)."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

# Every variable a template may use, and what it says when the lead has no value for it.
VARIABLES: dict[str, str] = {
    "companyName": "your business",
    "contactName": "there",
    "firstName": "there",
    "industry": "local",
    "city": "your area",
    "bookingTool": "your current booking tool",
    "website": "your website",
    "domain": "your website",
    "senderName": "the team",
    "senderEmail": "",
    "personalOpening": "",
}
OPENING = "personalOpening"
MAX_SUBJECT_CHARS = 300

_TAG = re.compile(r"\{\{([^{}\n]*)\}\}")
_VAR = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*(?:\|(.*))?$")
_BLOCK = re.compile(r"^\s*([#/])\s*([A-Za-z][A-Za-z0-9_]*)\s*$")
_TEXT_URL = re.compile(r"https?://[^\s<>\"'()\[\]{}]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?"
_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(\s*https?://[^"']*)\2""", re.IGNORECASE)
# A variable right after this would be inside a URL-bearing attribute: refused, because
# escaping cannot make a lead's value safe there (javascript: URLs, tracking bypass).
_OPEN_URL_ATTR = re.compile(r"""\b(?:href|src|action|srcset|style)\s*=\s*["']?[^"'>]*$""",
                            re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam"})


class TemplateError(ValueError):
    """A template that cannot be rendered; `problems` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Lit:
    text: str


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    default: str | None


@dataclass(frozen=True, slots=True)
class Link:
    position: int
    url: str


@dataclass(frozen=True, slots=True)
class Opening:
    """The personal opening block: the AI's sentence, or the fallback parts."""

    fallback: tuple[Lit | Var | Link, ...]


Part = Lit | Var | Link | Opening


@dataclass(frozen=True)
class CompiledTemplate:
    subject: tuple[Part, ...]
    text: tuple[Part, ...]
    html: tuple[Part, ...] | None  # None: made from the text body
    links: tuple[str, ...]  # original destinations, by position
    uses_opening: bool


@dataclass(frozen=True)
class RenderedTemplate:
    subject: str
    body_text: str
    body_html: str


class _Links:
    """Positions of link destinations in order of first appearance."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def position(self, url: str) -> int:
        if url not in self.urls:
            self.urls.append(url)
        return self.urls.index(url)


def _split_text_links(text: str, links: _Links) -> list[Lit | Link]:
    out: list[Lit | Link] = []
    pos = 0
    for m in _TEXT_URL.finditer(text):
        url = m.group(0).rstrip(_URL_TRAILING)
        end = m.start() + len(url)
        if m.start() > pos:
            out.append(Lit(text[pos:m.start()]))
        out.append(Link(links.position(url), url))
        pos = end
    if pos < len(text):
        out.append(Lit(text[pos:]))
    return out


def _split_html_links(text: str, links: _Links) -> list[Lit | Link]:
    out: list[Lit | Link] = []
    pos = 0
    for m in _HREF.finditer(text):
        url = html.unescape(m.group(3)).strip()
        out.append(Lit(text[pos:m.start(3)]))
        out.append(Link(links.position(url), url))
        pos = m.end(3)
    if pos < len(text):
        out.append(Lit(text[pos:]))
    return out


def _parse(source: str, where: str, mode: str, links: _Links | None,
           problems: list[str]) -> tuple[Part, ...]:
    """Parts of one template field. mode: subject | text | html."""
    parts: list[Part] = []
    block: list[Lit | Var | Link] | None = None
    pos = 0

    def literal(text: str) -> None:
        if not text:
            return
        for bad in ("{{", "}}", "{%", "%}"):
            if bad in text:
                problems.append(f"{where}: stray {bad!r} (variables are written {{{{name}}}})")
                break
        pieces: list[Lit | Link]
        if links is None:
            pieces = [Lit(text)]
        elif mode == "html":
            pieces = _split_html_links(text, links)
        else:
            pieces = _split_text_links(text, links)
        (block if block is not None else parts).extend(pieces)

    for m in _TAG.finditer(source):
        literal(source[pos:m.start()])
        pos = m.end()
        inner = m.group(1)
        if b := _BLOCK.match(inner):
            kind, name = b.groups()
            if name != OPENING:
                problems.append(f"{where}: only {{{{#{OPENING}}}}} can be a block, "
                                f"not {{{{{kind}{name}}}}}")
            elif mode == "subject":
                problems.append(f"{where}: {{{{#{OPENING}}}}} belongs in the body")
            elif kind == "#":
                if block is not None:
                    problems.append(f"{where}: {{{{#{OPENING}}}}} opened twice")
                block = []
            elif block is None:
                problems.append(f"{where}: {{{{/{OPENING}}}}} without {{{{#{OPENING}}}}}")
            else:
                parts.append(Opening(tuple(block)))
                block = None
            continue
        v = _VAR.match(inner)
        if not v:
            problems.append(f"{where}: {{{{{inner}}}}} is not a variable")
            continue
        name, default = v.group(1), v.group(2)
        if name not in VARIABLES:
            problems.append(f"{where}: unknown variable {{{{{name}}}}} (known: "
                            f"{', '.join(VARIABLES)})")
            continue
        if name == OPENING:
            if mode == "subject":
                problems.append(f"{where}: {{{{{OPENING}}}}} belongs in the body")
                continue
            if default is None:
                problems.append(f"{where}: {{{{{OPENING}}}}} needs a fallback: write "
                                f"{{{{#{OPENING}}}}}fallback text{{{{/{OPENING}}}}}")
                continue
            if block is not None:
                problems.append(f"{where}: {{{{{OPENING}}}}} inside its own block")
                continue
            parts.append(Opening((Lit(default.strip()),)))
            continue
        if mode == "html":
            before = "".join(p.text for p in (block if block is not None else parts)[-1:]
                             if isinstance(p, Lit))
            if _OPEN_URL_ATTR.search(before):
                problems.append(f"{where}: {{{{{name}}}}} inside a URL attribute (href, src, "
                                "...) is not allowed")
                continue
        var = Var(name, default.strip() if default is not None else None)
        (block if block is not None else parts).append(var)
    literal(source[pos:])
    if block is not None:
        problems.append(f"{where}: {{{{#{OPENING}}}}} is not closed")
    return tuple(parts)


def _has_opening(parts: tuple[Part, ...] | None) -> bool:
    return any(isinstance(p, Opening) for p in parts or ())


@lru_cache(maxsize=256)
def compile_template(subject: str, body_text: str, body_html: str | None = None
                     ) -> CompiledTemplate:
    """Parse a template once (cached); raises TemplateError listing every problem."""
    problems: list[str] = []
    if not subject.strip():
        problems.append("subject: empty")
    elif len(subject) > MAX_SUBJECT_CHARS:
        problems.append(f"subject: longer than {MAX_SUBJECT_CHARS} characters")
    if "\n" in subject or "\r" in subject:
        problems.append("subject: must be one line")
    if not body_text.strip():
        problems.append("body_text: empty")
    links = _Links()
    subject_parts = _parse(subject, "subject", "subject", None, problems)
    text_parts = _parse(body_text.strip(), "body_text", "text", links, problems)
    html_parts = (_parse(body_html.strip(), "body_html", "html", links, problems)
                  if body_html and body_html.strip() else None)
    if problems:
        raise TemplateError(problems)
    return CompiledTemplate(subject_parts, text_parts, html_parts, tuple(links.urls),
                            _has_opening(text_parts) or _has_opening(html_parts))


def validate_template(subject: str, body_text: str, body_html: str | None = None) -> list[str]:
    """Problems that would stop the template from rendering (empty list: it is fine). Call
    this when a template is saved."""
    try:
        compile_template(subject, body_text, body_html)
    except TemplateError as exc:
        return exc.problems
    return []


def clean_value(value: object) -> str:
    """A lead value fit for one line of an email: whitespace (CR, LF, tabs) collapsed."""
    if value is None:
        return ""
    return " ".join(str(value).split())


def first_name(contact_name: str | None) -> str | None:
    """The given name of a contact ("Dr. Jane Smith" -> "Jane"), None if there is none."""
    words = [w for w in clean_value(contact_name).split(" ") if w]
    while words and words[0].rstrip(".").lower() in _HONORIFICS:
        words.pop(0)
    # A single word that is a honorific or an initial is no name to greet someone by.
    if not words or len(words[0].rstrip(".")) < 2:
        return None
    return words[0]


def _value(var: Var, values: Mapping[str, str | None]) -> str:
    value = clean_value(values.get(var.name))
    if value:
        return value
    return var.default if var.default is not None else VARIABLES[var.name]


def _paragraphs(text: str) -> str:
    """Plain text as HTML: blank lines end a paragraph, other line breaks become <br>."""
    pieces = _PARAGRAPH_BREAK.split(html.escape(text, quote=True))
    return "</p>\n<p>".join(piece.replace("\n", "<br>\n") for piece in pieces)


def _render(parts: tuple[Part, ...], values: Mapping[str, str | None], mode: str,
            link_urls: Sequence[str], opening: str | None) -> str:
    """mode: text | html (an HTML template) | text_html (HTML made from the text body)."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, Lit):
            out.append(_paragraphs(part.text) if mode == "text_html" else part.text)
        elif isinstance(part, Var):
            value = _value(part, values)
            out.append(value if mode == "text" else html.escape(value, quote=True))
        elif isinstance(part, Link):
            url = link_urls[part.position]
            if mode == "text_html":
                out.append(f'<a href="{html.escape(url, quote=True)}">'
                           f"{html.escape(part.url, quote=True)}</a>")
            else:
                out.append(url if mode == "text" else html.escape(url, quote=True))
        elif opening:
            out.append(opening if mode == "text" else html.escape(opening, quote=True))
        else:
            out.append(_render(part.fallback, values, mode, link_urls, None))
    return "".join(out)


def render_template(
    template: CompiledTemplate,
    values: Mapping[str, str | None],
    link_urls: Sequence[str] | None = None,
    opening: str | None = None,
) -> RenderedTemplate:
    """Subject, text body and HTML body of one email. `link_urls[i]` replaces link i (the
    click-tracking URLs; the originals when None); `opening` replaces the personal opening
    block's fallback."""
    urls = list(template.links) if link_urls is None else list(link_urls)
    if len(urls) != len(template.links):
        raise ValueError(f"{len(template.links)} link URLs needed, {len(urls)} given")
    opening = clean_value(opening) or None
    subject = clean_value(_render(template.subject, values, "text", urls, None))
    text = _render(template.text, values, "text", urls, opening)
    if template.html is not None:
        body_html = _render(template.html, values, "html", urls, opening)
    else:
        body_html = f"<p>{_render(template.text, values, 'text_html', urls, opening)}</p>"
    return RenderedTemplate(subject, text, body_html)
