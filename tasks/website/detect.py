"""Turns one HTML page into `SiteFacts`: booking tools, booking-intent keywords, contact form,
analytics, social links, structured data and a 0-100 digital-maturity score.

Two extractors produce the same page features: the reference parses with BeautifulSoup (lxml
builder); the default fast path walks lxml's own tree with compiled XPath (about 20-40 times
cheaper, see benchmarks/RESULTS.md). Everything after extraction is shared, so both engines
give identical facts (a test checks this on every fixture and on generated sandbox pages).

Digital maturity is additive (docs/website-analysis.md has the same table):

    ======================  ======  ==================================================
    component               points  when
    ======================  ======  ==================================================
    https                   15      the (final) URL is https
    mobile viewport         15      <meta name="viewport" content="width=...">
    online booking          15      at least one booking tool detected
    analytics               10      any analytics/tag-manager/pixel signature
    social links            10      a link to a social profile (not a share button)
    structured data         10      JSON-LD (application/ld+json) or microdata (itemscope)
    contact form            10      a form with a message field and an email/phone/name field
    modern markup           10      HTML5 sectioning tags and no layout tables/<font>/<center>
    title + description      5      non-empty <title> and <meta name="description">
    ======================  ======  ==================================================

Booking-intent keywords (BOOKING_KEYWORDS) are counted in the visible text only (body text,
without script, style, svg, noscript and template), case-insensitively, whole words, longest
phrase first and non-overlapping ("book an appointment" counts once, not also as "appointment").
"""

from __future__ import annotations

import codecs
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from lxml import etree

from tasks.website.signatures import SignatureTable, load_signatures, match_url, normalise_url

Engine = Literal["fast", "bs4"]

# Subtrees whose text is not visible page text.
SKIP_TEXT = frozenset({"script", "style", "svg", "noscript", "template", "head"})
SEMANTIC_TAGS = ("header", "nav", "main", "footer", "section", "article")
LEGACY_TAGS = ("font", "center", "marquee", "frameset")
LAYOUT_TABLE_ATTRS = ("bgcolor", "cellpadding", "cellspacing", "background")

BOOKING_KEYWORDS: tuple[str, ...] = (
    # English
    "book now", "book online", "book an appointment", "book your appointment", "book a table",
    "book a consultation", "book a session", "book a class", "book your visit", "book today",
    "schedule an appointment", "schedule a consultation", "schedule online", "schedule now",
    "schedule", "make an appointment", "request an appointment", "appointments", "appointment",
    "reserve a table", "reserve now", "reserve", "reservations", "reservation", "booking",
    "bookings",
    # Spanish, French, German, Italian, Portuguese (cheap, common on local-business sites)
    "reservar", "reserva", "pedir cita", "cita", "réserver", "prendre rendez-vous",
    "rendez-vous", "termin buchen", "termin vereinbaren", "prenota", "prenotazione", "agendar",
)
# Japanese has no word boundaries: matched as plain substrings.
BOOKING_KEYWORDS_CJK: tuple[str, ...] = ("ご予約", "予約")

_KEYWORD_RE = re.compile(
    r"(?<!\w)(?:"
    + "|".join(re.escape(k) for k in sorted(BOOKING_KEYWORDS, key=len, reverse=True))
    + r")(?!\w)"
    + "|"
    + "|".join(re.escape(k) for k in sorted(BOOKING_KEYWORDS_CJK, key=len, reverse=True))
)
_PHONE_BOOKING_RE = re.compile(
    r"\b(?:call|phone|ring|text)(?: us)?(?: today| now| anytime)?"
    r"(?: (?:at|on) [+(]?\d[\d ().-]{5,}\d)?"
    r"(?: (?:to|for)) (?:book|schedule|make an appointment|reserve|an appointment|appointments"
    r"|a reservation|reservations)"
    r"|\b(?:book(?:ings)?|appointments?|reservations?) (?:are )?(?:by|over the) (?:tele)?phone"
)
# Starts with a literal "//" so the regex engine can skip ahead cheaply through long scripts.
_URL_IN_TEXT_RE = re.compile(r"//(?:[a-z0-9-]+\.)+[a-z]{2,}[^\s\"'<>\\)`]*")
_MESSAGE_FIELD_RE = re.compile(r"message|comment|enquir|inquir|question|nachricht|mensaje")
_CONTACT_FIELD_RE = re.compile(r"mail|phone|tel|name")
_SEARCH_ACTION_RE = re.compile(r"(?:^|/)search(?:[/?.]|$)|[?&]s=")
_META_CHARSET_RE = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE
)

MATURITY_POINTS: dict[str, int] = {
    "https": 15,
    "viewport": 15,
    "online_booking": 15,
    "analytics": 10,
    "social_links": 10,
    "structured_data": 10,
    "contact_form": 10,
    "modern_markup": 10,
    "title_and_description": 5,
}
assert sum(MATURITY_POINTS.values()) == 100


@dataclass(slots=True)
class SiteFacts:
    """What one page says about the business's online presence."""

    booking_tools: list[str]
    has_contact_form: bool
    booking_keyword_count: int
    has_analytics: bool
    has_viewport: bool
    is_https: bool
    social_links: list[str]
    has_structured_data: bool
    phone_booking: bool
    digital_maturity: int
    signals: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class FormInfo:
    attrs: str  # id, class, name, role, aria-label (lowercase, space-joined)
    action: str
    fields: list[tuple[str, str, str]]  # (tag, type, name/id/placeholder/aria-label lowercase)


@dataclass(slots=True)
class PageFeatures:
    """Raw facts extracted by either engine; everything downstream is engine-independent."""

    urls: set[str] = field(default_factory=set)
    inline_scripts: list[str] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)
    forms: list[FormInfo] = field(default_factory=list)
    viewport: bool = False
    generator: str = ""
    jsonld: int = 0
    microdata: bool = False
    title: bool = False
    description: bool = False
    semantic: int = 0
    legacy: int = 0
    tel_links: int = 0


# --- decoding --------------------------------------------------------------------------------

# WHATWG maps these labels to windows-1252 (browsers never use strict latin-1 for HTML).
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",
    "us-ascii": "cp1252", "ascii": "cp1252", "windows-1252": "cp1252", "x-sjis": "cp932",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "windows-31j": "cp932",
    "utf8": "utf-8", "x-user-defined": "cp1252", "gb2312": "gb18030", "gbk": "gb18030",
}


# Python codecs no browser knows as a charset: some raise on bytes.decode ("undefined", "idna"
# with errors="replace"), the others turn a page into something no browser would show.
_NOT_CHARSETS = frozenset(
    {"undefined", "idna", "punycode", "unicode-escape", "raw-unicode-escape", "utf-7"}
)


def _codec(label: str | None) -> str | None:
    """The Python codec for a charset label; None for unknown labels and for codecs that are not
    text encodings (hex, base64, zlib, rot13 ... would make bytes.decode raise)."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def charset_from_content_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return _codec(value)
    return None


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Bytes -> (text, codec used): BOM, then the Content-Type charset, then <meta charset> /
    http-equiv in the first 4 KB, then strict UTF-8, then windows-1252. Never raises:
    undecodable bytes become U+FFFD."""
    if body.startswith(codecs.BOM_UTF8):
        return body[3:].decode("utf-8", "replace"), "utf-8"
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return body.decode("utf-16", "replace"), "utf-16"
    codec = charset_from_content_type(content_type)
    if codec is None:
        m = _META_CHARSET_RE.search(body[:4096])
        if m:
            codec = _codec(m.group(1).decode("ascii", "replace"))
            # A page that says UTF-16 in ASCII-compatible bytes is not UTF-16.
            if codec and codec.startswith("utf-16"):
                codec = "utf-8"
    if codec is None:
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            codec = "cp1252"
    return body.decode(codec, "replace"), codec


# --- extraction: fast path (lxml's own tree) ---------------------------------------------------

_X_TEXT = etree.XPath(
    "//body//text()[not(ancestor::script or ancestor::style or ancestor::svg or "
    "ancestor::noscript or ancestor::template)]",
    smart_strings=False,
)
_X_URLS = etree.XPath(
    "//script/@src | //iframe/@src | //frame/@src | //a/@href | //link/@href | //area/@href"
    " | //form/@action | //@data-url | //@data-src | //@data-href | //embed/@src"
    " | //object/@data",
    smart_strings=False,
)
_X_ONCLICK = etree.XPath("//@onclick", smart_strings=False)
_X_SCRIPTS = etree.XPath("//script[not(@src)]")
_X_META = etree.XPath("//meta")
_X_TITLE = etree.XPath("//title/text()", smart_strings=False)
_X_ITEMSCOPE = etree.XPath("boolean(//*[@itemscope or @itemtype])")
_X_SEMANTIC = etree.XPath("count(" + " | ".join(f"//{t}" for t in SEMANTIC_TAGS) + ")")
_X_LEGACY = etree.XPath(
    "count("
    + " | ".join(f"//{t}" for t in LEGACY_TAGS)
    + " | //table[" + " or ".join(f"@{a}" for a in LAYOUT_TABLE_ATTRS) + "]"
    + " | //table//table)"
)
_X_TEL = etree.XPath("count(//a[starts-with(normalize-space(@href), 'tel:')])")
_X_FORMS = etree.XPath("//form")
_X_FIELDS = etree.XPath(".//input | .//textarea | .//select")
_PARSER = etree.HTMLParser(recover=True, no_network=True, remove_blank_text=False)
# lxml refuses a str that opens with an XML declaration naming an encoding (XHTML pages do); the
# text is decoded already, so the declaration has nothing left to say.
_XML_DECL_RE = re.compile(r"\A<\?xml[^>]*>")


def _attr_text(values: list[str | None]) -> str:
    return " ".join(" ".join(v.split()) for v in values if v).lower()


def _extract_fast(text: str) -> PageFeatures:
    f = PageFeatures()
    if not text.strip():
        return f
    if text.startswith("<?xml"):
        text = _XML_DECL_RE.sub("", text)
    try:
        root = etree.fromstring(text, _PARSER)
    except (etree.ParserError, ValueError):
        root = None
    if root is None:
        return f
    if _PARSER.error_log.filter_types([etree.ErrorTypes.ERR_RESOURCE_LIMIT]):
        # libxml2 stops building the tree past 256 levels of nesting (unclosed tags do that) and
        # drops the rest of the page; the BeautifulSoup path has no such limit.
        return _extract_bs4(text)
    f.text_parts = _X_TEXT(root)
    f.urls = {u.strip() for u in _X_URLS(root) if u and u.strip()}
    for script in _X_SCRIPTS(root):
        body = script.text or ""
        stype = (script.get("type") or "").strip().lower()
        if stype == "application/ld+json":
            if body.strip():
                f.jsonld += 1
            continue
        if body:
            f.inline_scripts.append(body)
    f.inline_scripts.extend(v for v in _X_ONCLICK(root) if v)
    for meta in _X_META(root):
        _meta(f, meta.get("name"), meta.get("content"))
    f.title = any(t.strip() for t in _X_TITLE(root))
    f.microdata = bool(_X_ITEMSCOPE(root))
    f.semantic = int(_X_SEMANTIC(root))
    f.legacy = int(_X_LEGACY(root))
    f.tel_links = int(_X_TEL(root))
    for form in _X_FORMS(root):
        fields = [
            (
                el.tag,
                (el.get("type") or ("text" if el.tag == "input" else el.tag)).strip().lower(),
                _attr_text(
                    [el.get("name"), el.get("id"), el.get("placeholder"), el.get("aria-label")]
                ),
            )
            for el in _X_FIELDS(form)
        ]
        f.forms.append(
            FormInfo(
                attrs=_attr_text(
                    [form.get(a) for a in ("id", "class", "name", "role", "aria-label")]
                ),
                action=(form.get("action") or "").strip().lower(),
                fields=fields,
            )
        )
    return f


def _meta(f: PageFeatures, name: str | None, content: str | None) -> None:
    name = (name or "").strip().lower()
    content = content or ""
    if name == "viewport" and "width" in content.lower():
        f.viewport = True
    elif name == "generator":
        f.generator = " ".join(content.split()).lower()
    elif name == "description" and content.strip():
        f.description = True


# --- extraction: reference (BeautifulSoup, lxml builder) ---------------------------------------


def _extract_bs4(text: str) -> PageFeatures:
    from bs4 import BeautifulSoup
    from bs4.element import NavigableString, PreformattedString, Tag

    f = PageFeatures()
    if not text.strip():
        return f
    soup = BeautifulSoup(text, "lxml")

    def attr(tag: Tag, name: str) -> str | None:
        value = tag.get(name)
        if isinstance(value, list):
            return " ".join(value)
        return value

    url_attrs = {
        "script": ("src",), "iframe": ("src",), "frame": ("src",), "a": ("href",),
        "link": ("href",), "area": ("href",), "form": ("action",), "embed": ("src",),
        "object": ("data",),
    }
    for tag in soup.find_all(True):
        name = tag.name
        for a in (*url_attrs.get(name, ()), "data-url", "data-src", "data-href"):
            value = attr(tag, a)
            if value and value.strip():
                f.urls.add(value.strip())
        onclick = attr(tag, "onclick")
        if onclick:
            f.inline_scripts.append(onclick)
        if tag.has_attr("itemscope") or tag.has_attr("itemtype"):
            f.microdata = True
        if name in SEMANTIC_TAGS:
            f.semantic += 1
        if name in LEGACY_TAGS or name == "table" and (
            any(tag.has_attr(a) for a in LAYOUT_TABLE_ATTRS) or tag.find_parent("table")
        ):
            f.legacy += 1
        if name == "a" and (attr(tag, "href") or "").strip().startswith("tel:"):
            f.tel_links += 1
        if name == "script" and not tag.has_attr("src"):
            body = tag.string or ""
            if (attr(tag, "type") or "").strip().lower() == "application/ld+json":
                if body.strip():
                    f.jsonld += 1
            elif body:
                f.inline_scripts.append(str(body))
        elif name == "meta":
            _meta(f, attr(tag, "name"), attr(tag, "content"))
        elif name == "title" and tag.get_text().strip():
            f.title = True
        elif name == "form":
            fields = []
            for el in tag.find_all(["input", "textarea", "select"]):
                ftype = attr(el, "type") or ("text" if el.name == "input" else el.name)
                fields.append(
                    (
                        el.name,
                        ftype.strip().lower(),
                        _attr_text(
                            [attr(el, k) for k in ("name", "id", "placeholder", "aria-label")]
                        ),
                    )
                )
            f.forms.append(
                FormInfo(
                    attrs=_attr_text(
                        [attr(tag, a) for a in ("id", "class", "name", "role", "aria-label")]
                    ),
                    action=(attr(tag, "action") or "").strip().lower(),
                    fields=fields,
                )
            )
    # Visible text: an explicit stack instead of recursion, so deep nesting cannot overflow.
    for body_tag in soup.find_all("body"):
        stack: list[Any] = list(reversed(body_tag.contents))
        while stack:
            node = stack.pop()
            if isinstance(node, Tag):
                if node.name not in SKIP_TEXT:
                    stack.extend(reversed(node.contents))
            elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
                f.text_parts.append(str(node))
    return f


# --- interpretation (shared) -------------------------------------------------------------------


def _classify_form(form: FormInfo) -> str:
    """contact | search | newsletter | other."""
    types = [t for _, t, _ in form.fields]
    names = " ".join(n for _, _, n in form.fields)
    if "search" in form.attrs.split() or "search" in types or _SEARCH_ACTION_RE.search(form.action):
        return "search"
    text_names = [n for tag, t, n in form.fields if tag == "input" and t in ("text", "")]
    search_names = (["q"], ["s"], ["query"], ["search"])
    if text_names and all(n.split()[:1] in search_names for n in text_names):
        return "search"
    has_message = any(tag == "textarea" for tag, _, _ in form.fields) or bool(
        _MESSAGE_FIELD_RE.search(names)
    )
    has_contact = any(t in ("email", "tel") for t in types) or bool(
        _CONTACT_FIELD_RE.search(names)
    )
    if has_message and has_contact:
        return "contact"
    if "email" in types or "mail" in names or "newsletter" in form.attrs or "subscribe" in (
        form.attrs + " " + form.action
    ):
        return "newsletter"
    return "other"


def interpret(
    features: PageFeatures, url: str, charset: str | None, table: SignatureTable | None = None
) -> SiteFacts:
    """Page features -> SiteFacts (pure; shared by both engines)."""
    table = table or load_signatures()
    page_host = (urlsplit(url).hostname or "").lower()
    generator_hint = features.generator
    if any("static.parastorage.com" in u or "static.wixstatic.com" in u for u in features.urls):
        generator_hint += " wix"
    # Same-site paths only matter for tools recognised by path on their own builder's sites.
    want_paths = any(gen in generator_hint for _, gen, _ in table.site_path_res)

    booking: dict[str, str] = {}
    analytics: set[str] = set()
    social: set[str] = set()
    same_site_paths: list[str] = []
    for raw in sorted(features.urls):
        norm = normalise_url(raw)
        if norm is None:
            if not want_paths or raw.lower().startswith(
                ("mailto:", "tel:", "javascript:", "data:", "#")
            ):
                continue
            parts = urlsplit(urljoin(url, raw))
            if (parts.hostname or "").lower() == page_host:
                same_site_paths.append(parts.path + (f"?{parts.query}" if parts.query else ""))
            continue
        tool = match_url(table.booking_re, norm)
        if tool:
            booking.setdefault(tool, "url")
        name = match_url(table.analytics_re, norm)
        if name:
            analytics.add(name)
        name = match_url(table.social_re, norm)
        if name:
            social.add(name)
        host = norm.split("/", 1)[0].split("?", 1)[0]
        if host == page_host or host == "www." + page_host or "www." + host == page_host:
            same_site_paths.append(norm[len(host):] or "/")

    script_text = "\n".join(features.inline_scripts).lower()
    if script_text:
        for m in _URL_IN_TEXT_RE.finditer(script_text):
            norm = normalise_url(m.group(0))
            if norm is None:
                continue
            tool = match_url(table.booking_re, norm)
            if tool:
                booking.setdefault(tool, "script_url")
            name = match_url(table.analytics_re, norm)
            if name:
                analytics.add(name)
        for sig in table.booking:
            if sig.name not in booking and any(s in script_text for s in sig.script):
                booking[sig.name] = "script_api"
        for sig in table.analytics:
            if sig.name not in analytics and any(s in script_text for s in sig.script):
                analytics.add(sig.name)

    for tool, generator, pattern in table.site_path_res:
        if tool in booking or generator not in generator_hint:
            continue
        if any(pattern.match(p) for p in same_site_paths):
            booking[tool] = "site_path"

    text = " ".join(" ".join(features.text_parts).split()).lower()
    keyword_count = len(_KEYWORD_RE.findall(text))
    phone_booking = bool(_PHONE_BOOKING_RE.search(text))

    form_kinds = [_classify_form(f) for f in features.forms]
    has_contact_form = "contact" in form_kinds
    has_structured = features.jsonld > 0 or features.microdata
    modern = features.semantic > 0 and features.legacy == 0
    is_https = url.lower().startswith("https://")

    components = {
        "https": is_https,
        "viewport": features.viewport,
        "online_booking": bool(booking),
        "analytics": bool(analytics),
        "social_links": bool(social),
        "structured_data": has_structured,
        "contact_form": has_contact_form,
        "modern_markup": modern,
        "title_and_description": features.title and features.description,
    }
    points = {k: MATURITY_POINTS[k] for k, on in components.items() if on}
    signals: dict[str, Any] = {
        "booking_evidence": dict(sorted(booking.items())),
        "analytics": sorted(analytics),
        "forms": {k: form_kinds.count(k) for k in sorted(set(form_kinds))},
        "jsonld": features.jsonld,
        "microdata": features.microdata,
        "semantic_tags": features.semantic,
        "legacy_markup": features.legacy,
        "tel_links": features.tel_links,
        "generator": features.generator,
        "title": features.title,
        "meta_description": features.description,
        "charset": charset,
        "maturity_points": points,
    }
    return SiteFacts(
        booking_tools=sorted(booking),
        has_contact_form=has_contact_form,
        booking_keyword_count=keyword_count,
        has_analytics=bool(analytics),
        has_viewport=features.viewport,
        is_https=is_https,
        social_links=sorted(social),
        has_structured_data=has_structured,
        phone_booking=phone_booking,
        digital_maturity=sum(points.values()),
        signals=signals,
    )


def analyse_html(
    html: str | bytes, url: str, content_type: str | None = None, engine: Engine = "fast"
) -> SiteFacts:
    """Analyse one page fetched from `url`. Bytes are decoded per `decode_html`; `engine`
    selects the fast lxml path (default) or the BeautifulSoup reference."""
    if isinstance(html, bytes):
        text, charset = decode_html(html, content_type)
    else:
        text, charset = html, None
    # NUL bytes make libxml2 stop early; they are never meaningful in HTML text.
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if engine == "fast":
        features = _extract_fast(text)
    elif engine == "bs4":
        features = _extract_bs4(text)
    else:
        raise ValueError(f"unknown engine {engine!r} (fast or bs4)")
    return interpret(features, url, charset)
