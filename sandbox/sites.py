# ruff: noqa: E501  (the embed table holds vendor snippets verbatim)
"""Serves each sandbox business's website: realistic pages (booking widgets embedded as real sites
do, forms, old table layouts, builder markup, non-UTF-8 charsets, redirects, rare faults) with
realistic weight, built cheaply from pre-generated CSS/JS/SVG blobs and cached in a bounded LRU."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from html import escape

from starlette.responses import Response, StreamingResponse

from sandbox.dataset import Business, SiteProfile
from sandbox.site_profiles import random_site_profile

TIMEOUT_SLEEP_S = 30.0  # "timeout" fault: longer than any sane fetch deadline
NEVER_ENDS_S = 120.0  # "never_ends" fault: trickles bytes this long before giving up
HUGE_BYTES = 3_000_000  # "huge" fault: above the fetcher's default 2 MB cap
CACHE_BUDGET_BYTES = 64 * 1024 * 1024
CHAIN = ("/", "/home", "/en/", "/en/index.html")
INTERNAL_TARGET = "http://169.254.169.254/latest/meta-data/"

# --- pre-generated blobs (built once at import, deterministic) ---------------------------------


def _build_blobs() -> tuple[str, str, list[str], list[str]]:
    rng = random.Random(20240607)
    props = ("margin", "padding", "color", "background", "border-radius", "font-size",
             "line-height", "display", "gap", "grid-template-columns", "transition", "opacity")
    css: list[str] = []
    while sum(map(len, css)) < 600_000:
        cls = f".c-{rng.getrandbits(32):08x}"
        decls = ";".join(
            f"{rng.choice(props)}:{rng.randint(0, 48)}px {rng.randint(0, 24)}px #{rng.getrandbits(24):06x}"
            for _ in range(rng.randint(2, 6))
        )
        media = rng.random() < 0.05
        rule = f"{cls}{{{decls}}}"
        css.append(f"@media (max-width:{rng.choice((480, 768, 1024))}px){{{rule}}}" if media else rule)
    idents = [f"_{rng.getrandbits(20):05x}" for _ in range(400)]
    js: list[str] = []
    while sum(map(len, js)) < 600_000:
        a, b, c = rng.sample(idents, 3)
        kind = rng.random()
        if kind < 0.5:
            js.append(f"function {a}({b},{c}){{var n={b}+{c}*{rng.randint(1, 99)};return n>>1}}")
        elif kind < 0.8:
            js.append(f"var {a}=[{','.join(str(rng.randint(0, 9999)) for _ in range(12))}];")
        elif kind < 0.95:
            js.append(f"{a}.prototype.{b}=function(e){{return this.{c}(e)||null}};")
        else:
            js.append(f"\n// module {a}: layout helpers\n")
    paths = [
        '<path d="M{0} {1}L{2} {3}C{4} {5} {6} {7} {0} {3}Z" fill="#{8:06x}"/>'.format(
            *(round(rng.uniform(0, 64), 2) for _ in range(8)), rng.getrandbits(24)
        )
        for _ in range(6000)
    ]
    words = ("our", "team", "care", "relax", "fresh", "style", "experience", "treatment", "skin",
             "hair", "friendly", "staff", "quality", "products", "local", "family", "visit",
             "welcome", "clients", "years", "trusted", "professional", "gentle", "results",
             "natural", "comfort", "modern", "service", "health", "wellness", "the", "and", "with")
    sentences = [
        " ".join(rng.choice(words) for _ in range(rng.randint(8, 18))).capitalize() + "."
        for _ in range(800)
    ]
    return "".join(css), "".join(js), paths, sentences


CSS_BLOB, JS_BLOB, SVG_PATHS, SENTENCES = _build_blobs()


def _build_cards() -> list[str]:
    """Element-dense markup (gallery/menu/testimonial cards as page builders emit them)."""
    rng = random.Random(99)
    cards = []
    for i in range(3000):
        cls = f"c-{rng.getrandbits(24):06x}"
        cards.append(
            f'<div class="card {cls}" data-index="{i}"><div class="card-inner"><div class="card-media">'
            f'<img src="/media/{cls}.webp" alt="" loading="lazy" width="320" height="240"></div>'
            f'<div class="card-body"><h4 class="card-title"><span>{rng.choice(SENTENCES)[:28]}</span></h4>'
            f'<p class="card-text">{rng.choice(SENTENCES)}</p><ul class="tags"><li>'
            f'{rng.choice(SENTENCES)[:12]}</li><li>{rng.choice(SENTENCES)[:9]}</li></ul>'
            f'<a class="card-link" href="/gallery#{cls}">More</a></div></div></div>'
        )
    return cards


CARDS = _build_cards()

# --- booking embeds as real sites paste them ---------------------------------------------------

# tool -> {"script": html, "iframe": url, "link": url}; {slug}, {id}, {uuid}, {domain} filled in.
EMBEDS: dict[str, dict[str, str]] = {
    "calendly": {
        "script": '<div class="calendly-inline-widget" data-url="https://calendly.com/{slug}/appointment" style="min-width:320px;height:700px;"></div>\n<script type="text/javascript" src="https://assets.calendly.com/assets/external/widget.js" async></script>',
        "iframe": "https://calendly.com/{slug}/30min?embed_domain={domain}&embed_type=Inline",
        "link": "https://calendly.com/{slug}",
        "popup": '<link href="https://assets.calendly.com/assets/external/widget.css" rel="stylesheet">\n<script src="https://assets.calendly.com/assets/external/widget.js" type="text/javascript" async></script>\n<a href="" onclick="Calendly.initPopupWidget({{url: \'https://calendly.com/{slug}\'}});return false;">Schedule time with us</a>',
    },
    "acuity": {
        "script": '<a href="https://{slug}.as.me/" target="_blank" class="acuity-embed-button" style="background:#3f51b5;color:#fff;padding:8px 12px;border-radius:4px;">Schedule Appointment</a><link rel="stylesheet" href="https://embed.acuityscheduling.com/embed/button/{id}.css" id="acuity-button-styles" /><script src="https://embed.acuityscheduling.com/embed/button/{id}.js" async></script>',
        "iframe": "https://app.acuityscheduling.com/schedule.php?owner={id}&ref=embedded_csp",
        "link": "https://{slug}.as.me/schedule.php",
    },
    "square": {
        "script": '<script src="https://app.squareup.com/appointments/buyer/widget/{uuid}/{id}.js"></script>',
        "iframe": "https://book.squareup.com/appointments/{uuid}/location/{id}/services",
        "link": "https://{slug}.square.site/",
    },
    "vagaro": {
        "script": '<div class="vagaro" style="width:250px;padding:0;border:0;margin:0 auto;text-align:center;"><style>.vagaro a {{font-size:14px;color:#AAA;text-decoration:none;}}</style><a href="https://www.vagaro.com/pro/">Powered by Vagaro</a>&nbsp;<a href="https://www.vagaro.com/pro/salon-software">Salon Software</a><script type="text/javascript" src="https://www.vagaro.com//resources/WidgetEmbeddedLoader/OZqnC3OqD3OcT3qmV35y6RuSdBuOc1WJD1wOc1WO61Ctdg4tjxMG9pUxapkUcPCu7gevEhAJDXwOapcUbfY{id}?v=tzYSsbQXFBZ9JnQ6ItTkmYNFKcHVlxM2ACKXYjPDUe5#"></script></div>',
        "iframe": "https://www.vagaro.com/{slug}/services?widget=true",
        "link": "https://www.vagaro.com/{slug}",
    },
    "mindbody": {
        "script": '<script src="https://widgets.mindbodyonline.com/javascripts/healcode.js" type="text/javascript"></script>\n<healcode-widget data-type="schedules" data-widget-partner="object" data-widget-id="{id}" data-widget-version="1"></healcode-widget>',
        "iframe": "https://brandedweb.mindbodyonline.com/iframe/schedule/{id}",
        "link": "https://clients.mindbodyonline.com/classic/ws?studioid={id}&stype=-7",
    },
    "booksy": {
        "script": '<script type="text/javascript" src="https://booksy.com/widget/code.js?id={id}&country=us&lang=en"></script>',
        "iframe": "https://booksy.com/widget/index.html?id={id}&country=us&lang=en",
        "link": "https://booksy.com/en-us/{id}_{slug}_hair-salon_134763_austin",
    },
    "fresha": {
        "script": '<script src="https://www.fresha.com/widget/v1/loader.js" data-location="{slug}-{id}" async></script>',
        "iframe": "https://www.fresha.com/book-now/{slug}-{id}/services?lid={id}&share&pId={id}",
        "link": "https://www.fresha.com/a/{slug}-austin-{id}",
    },
    "setmore": {
        "script": '<script id="setmore_script" type="text/javascript" src="https://storage.googleapis.com/fullintegration-live/webComponentAppListing/Container/setmoreIframeLive.js"></script><a style="float:none" id="Setmore_button_iframe" href="https://booking.setmore.com/scheduleappointment/{uuid}"><img border="none" src="https://storage.googleapis.com/full-assets/setmore/images/1.0/Settings/book-now-blue.svg" alt="Book an appointment with {name} using Setmore" /></a>',
        "iframe": "https://booking.setmore.com/scheduleappointment/{uuid}",
        "link": "https://{slug}.setmore.com/",
    },
    "simplybook": {
        "script": '<script src="//widget.simplybook.me/v2/widget/widget.js" type="text/javascript"></script>\n<script type="text/javascript">var widget = new SimplybookWidget({{"widget_type":"iframe","url":"https:\\/\\/{slug}.simplybook.me","theme":"default","timeline":"modern_week","datepicker":"top_calendar"}});</script>',
        "iframe": "https://{slug}.simplybook.me/v2/",
        "link": "https://{slug}.simplybook.me/v2/#book",
    },
    "schedulicity": {
        "script": '<script type="text/javascript" src="https://www.schedulicity.com/Scheduling/Embed/embedjs.aspx?business={ID}"></script>',
        "iframe": "https://www.schedulicity.com/scheduling/{ID}/services",
        "link": "https://www.schedulicity.com/scheduling/{ID}",
    },
    "glossgenius": {
        "iframe": "https://{slug}.glossgenius.com/services",
        "link": "https://{slug}.glossgenius.com/",
    },
    "styleseat": {
        "iframe": "https://www.styleseat.com/m/v/{slug}?embed=1",
        "link": "https://www.styleseat.com/m/v/{slug}",
    },
    "zocdoc": {
        "script": '<a href="https://www.zocdoc.com/practice/{slug}-{id}?lock=true&isNewPatient=false&referrerType=widget" class="zd-plugin" data-type="book-button" data-practice-id="{id}" title="{name}"><img src="https://offsiteSchedule.zocdoc.com/images/remote/zd_bookonline_162x48.png" alt="{name}" title="{name}" style="border: 0"/></a><script>(function (d) {{ var script = d.createElement(\'script\'); script.type = \'text/javascript\'; script.async = true; script.src = \'https://offsiteschedule.zocdoc.com/plugin/embed\'; var s = d.getElementsByTagName(\'script\')[0]; s.parentNode.insertBefore(script, s); }})(document);</script>',
        "iframe": "https://www.zocdoc.com/widget/practice/{id}",
        "link": "https://www.zocdoc.com/doctor/{slug}-{id}",
    },
    "opentable": {
        "script": "<script type='text/javascript' src='//www.opentable.com/widget/reservation/loader?rid={id}&type=standard&theme=standard&iframe=true&domain=com&lang=en-US&newtab=false&ot_source=Restaurant%20website'></script>",
        "iframe": "https://www.opentable.com/widget/reservation/canvas?rid={id}&type=standard&theme=standard",
        "link": "https://www.opentable.com/r/{slug}-austin",
    },
    "resy": {
        "script": '<a href="https://resy.com/cities/aus/{slug}" id="resyButton-{id}">Book your {name} reservation on Resy</a>\n<script src="https://widgets.resy.com/embed.js"></script>\n<script>resyWidget.addButton(document.getElementById(\'resyButton-{id}\'), {{"venueId": {id}, "apiKey": "sandboxdemokey", "replace": "true"}});</script>',
        "iframe": "https://widgets.resy.com/#/venues/{id}",
        "link": "https://resy.com/cities/aus/{slug}",
    },
    "tock": {
        "script": "<script>!function(t,o,c,k){{if(!t.tock){{var e=t.tock=function(){{e.callMethod?e.callMethod.apply(e,arguments):e.queue.push(arguments)}};t._tock||(t._tock=e),e.push=e,e.loaded=!0,e.version='1.0',e.queue=[];var f=o.createElement(c);f.async=!0,f.src=k;var g=o.getElementsByTagName(c)[0];g.parentNode.insertBefore(f,g)}}}}(window,document,'script','https://www.exploretock.com/tock.js');tock('init', '{slug}');</script><div id=\"Tock_widget_container\" data-tock-display-mode=\"Button\" data-tock-color-mode=\"Blue\" data-tock-locale=\"en-us\" data-tock-timezone=\"America/Chicago\"></div>",
        "iframe": "https://www.exploretock.com/{slug}/search?embed=1",
        "link": "https://www.exploretock.com/{slug}",
    },
    "sevenrooms": {
        "script": '<div id="sr-res-root" class="sr-md sr-light sr-#c09853">Book now</div>\n<script src="https://www.sevenrooms.com/widget/embed.js"></script>\n<script>SevenroomsWidget.init({{ venueId: "{slug}", triggerId: "sr-res-root", type: "reservations", styleButton: true, widgetType: "standard" }});</script>',
        "iframe": "https://www.sevenrooms.com/reservations/{slug}?venues={slug}&tracking=website",
        "link": "https://www.sevenrooms.com/explore/{slug}/reservations/create/search",
    },
    "jane": {
        "iframe": "https://{slug}.janeapp.com/embed/book",
        "link": "https://{slug}.janeapp.com/",
    },
    "cliniko": {
        "iframe": "https://{slug}.cliniko.com/bookings?embedded=true",
        "link": "https://{slug}.au1.cliniko.com/bookings",
    },
    "hubspot_meetings": {
        "script": '<div class="meetings-iframe-container" data-src="https://meetings.hubspot.com/{slug}?embed=true"></div>\n<script type="text/javascript" src="https://static.hsappstatic.net/MeetingsEmbed/ex/MeetingsEmbedCode.js"></script>',
        "iframe": "https://meetings.hubspot.com/{slug}?embed=true",
        "link": "https://meetings.hubspot.com/{slug}",
    },
    "microsoft_bookings": {
        "iframe": "https://outlook.office365.com/owa/calendar/{Slug}@{slug}.onmicrosoft.com/bookings/",
        "link": "https://outlook.office.com/book/{Slug}Bookings@{slug}.onmicrosoft.com/",
    },
    "google_calendar": {
        "script": "<link href=\"https://calendar.google.com/calendar/scheduling-button-script.css\" rel=\"stylesheet\">\n<script src=\"https://calendar.google.com/calendar/scheduling-button-script.js\" async></script>\n<script>(function() {{ var target = document.currentScript; window.addEventListener('load', function() {{ calendar.schedulingButton.load({{ url: 'https://calendar.google.com/calendar/appointments/schedules/AcZssZ{uuid}?gv=true', color: '#039BE5', label: 'Book an appointment', target, }}); }}); }})();</script>",
        "iframe": "https://calendar.google.com/calendar/appointments/schedules/AcZssZ{uuid}?gv=true",
        "link": "https://calendar.app.google/{uuid}",
    },
    "wix_bookings": {
        "script": '<script src="https://static.parastorage.com/services/wix-bookings-widget/1.1912.0/app.bundle.min.js" async></script><a href="/book-online" data-testid="linkElement" class="wixui-button">Book Online</a>',
        "iframe": "https://{slug}.wixsite.com/{slug}/book-online",
        "link": "/book-online",
    },
    "timely": {
        "script": "<script src=\"https://book.gettimely.com/widget/book-button-v1.5.js\" id=\"timelyScript\"></script>\n<script>var widget = new TimelyBookButton('{slug}', {{ dontCreateButton: true }});</script>",
        "iframe": "https://bookings.gettimely.com/{slug}/bb/book",
        "link": "https://bookings.gettimely.com/{slug}/book",
    },
    "phorest": {
        "iframe": "https://www.phorest.com/book/salons/{slug}",
        "link": "https://www.phorest.com/salons/{slug}",
    },
    "boulevard": {
        "script": "<script>(function (a) {{ var b = {{ businessId: '{uuid}' }}; var c = a.createElement('script'); var d = a.querySelector('script'); c.src = 'https://static.joinboulevard.com/injector.min.js'; c.async = true; c.onload = function () {{ blvd.init(b); }}; d.parentNode.insertBefore(c, d); }})(document);</script>",
        "iframe": "https://www.joinblvd.com/b/{slug}/widget#/visit-type",
        "link": "https://www.joinblvd.com/b/{slug}/widget",
    },
    "zenoti": {
        "iframe": "https://{slug}.zenoti.com/webstoreNew/services?embed=1",
        "link": "https://{slug}.zenoti.com/webstoreNew/services",
    },
    "mangomint": {
        "script": '<script src="https://booking.mangomint.com/app.js" data-mangomint-company-id="{id}" async></script>',
        "link": "https://booking.mangomint.com/{id}",
    },
    "youcanbookme": {
        "iframe": "https://{slug}.youcanbook.me/?noframe=true&skipHeaderFooter=true",
        "link": "https://{slug}.youcanbook.me/",
    },
    "tidycal": {
        "script": '<div class="tidycal-embed" data-path="{slug}/30-minute-meeting"></div><script src="https://asset-tidycal.b-cdn.net/js/embed.js" async></script>',
        "link": "https://tidycal.com/{slug}/30-minute-meeting",
    },
    "genbook": {"link": "https://www.genbook.com/bookings/slot/reservation/{id}?bookingSourceId=1000"},
    "appointy": {
        "iframe": "https://booking.appointy.com/{slug}?isgadget=1",
        "link": "https://{slug}.appointy.com/",
    },
    "savvycal": {
        "script": '<script src="https://embed.savvycal.com/v1/embed.js"></script><script>window.SavvyCal=window.SavvyCal||function(){{(SavvyCal.q=SavvyCal.q||[]).push(arguments)}};SavvyCal(\'init\');</script>',
        "link": "https://savvycal.com/{slug}/chat",
    },
    "treatwell": {
        "iframe": "https://widget.treatwell.co.uk/place/{slug}/",
        "link": "https://www.treatwell.co.uk/place/{slug}/",
    },
    "doctolib": {"link": "https://www.doctolib.fr/dentiste/paris/{slug}"},
}

ANALYTICS_SNIPPETS = (
    "<script async src=\"https://www.googletagmanager.com/gtag/js?id=G-{ID}\"></script>\n<script>window.dataLayer = window.dataLayer || [];function gtag(){{dataLayer.push(arguments);}}gtag('js', new Date());gtag('config', 'G-{ID}');</script>",
    "<script>(function(w,d,s,l,i){{w[l]=w[l]||[];w[l].push({{'gtm.start':new Date().getTime(),event:'gtm.js'}});var f=d.getElementsByTagName(s)[0],j=d.createElement(s),dl=l!='dataLayer'?'&l='+l:'';j.async=true;j.src='https://www.googletagmanager.com/gtm.js?id='+i+dl;f.parentNode.insertBefore(j,f);}})(window,document,'script','dataLayer','GTM-{ID}');</script>",
    "<script>!function(f,b,e,v,n,t,s){{if(f.fbq)return;n=f.fbq=function(){{n.callMethod?n.callMethod.apply(n,arguments):n.queue.push(arguments)}};if(!f._fbq)f._fbq=n;n.push=n;n.loaded=!0;n.version='2.0';n.queue=[];t=b.createElement(e);t.async=!0;t.src=v;s=b.getElementsByTagName(e)[0];s.parentNode.insertBefore(t,s)}}(window, document,'script','https://connect.facebook.net/en_US/fbevents.js');fbq('init', '{id}');fbq('track', 'PageView');</script>",
    '<script defer data-domain="{domain}" src="https://plausible.io/js/script.js"></script>',
    "<script>(function(i,s,o,g,r,a,m){{i['GoogleAnalyticsObject']=r;i[r]=i[r]||function(){{(i[r].q=i[r].q||[]).push(arguments)}},i[r].l=1*new Date();a=s.createElement(o),m=s.getElementsByTagName(o)[0];a.async=1;a.src=g;m.parentNode.insertBefore(a,m)}})(window,document,'script','https://www.google-analytics.com/analytics.js','ga');ga('create', 'UA-{id}-1', 'auto');ga('send', 'pageview');</script>",
    "<script>(function(h,o,t,j,a,r){{h.hj=h.hj||function(){{(h.hj.q=h.hj.q||[]).push(arguments)}};h._hjSettings={{hjid:{id},hjsv:6}};a=o.getElementsByTagName('head')[0];r=o.createElement('script');r.async=1;r.src='https://static.hotjar.com/c/hotjar-'+h._hjSettings.hjid+'.js?sv='+h._hjSettings.hjsv;a.appendChild(r);}})(window,document);</script>",
)
ANALYTICS_WEIGHTS = (45, 20, 12, 5, 10, 8)
SOCIAL = (
    ("Facebook", "https://www.facebook.com/{slug}"),
    ("Instagram", "https://www.instagram.com/{slug}/"),
    ("TikTok", "https://www.tiktok.com/@{slug}"),
    ("Yelp", "https://www.yelp.com/biz/{slug}-austin"),
    ("X", "https://x.com/{slug}"),
)
# Things real sites carry that are not booking tools (no analyser may count them).
DECOYS = (
    '<p>We accept Square, Visa and all major cards.</p>',
    '<p class="small">Find us on Town Square, next to the bakery.</p>',
    '<a href="https://www.facebook.com/sharer/sharer.php?u=https%3A%2F%2F{domain}%2F">Share on Facebook</a>',
    '<a href="https://squareup.com/us/en/point-of-sale">Payments by Square</a>',
    '<p>Questions? We used to take bookings via calendly.com but now we answer by email.</p>',
    '<a href="https://www.opentable.com/">Find restaurants near you</a>',
)
SERVICES = ("Haircut & Style", "Colour & Balayage", "Manicure", "Pedicure", "Facial",
            "Deep-tissue Massage", "Physiotherapy", "Yoga Class", "Pilates", "Teeth Cleaning",
            "Consultation", "Brow Shaping", "Lash Extensions", "Waxing")
ACCENTED = ("Soins du visage · Épilation · Manucure française — Crème brûlée café",
            "Señora Núñez’s “signature” treatment, über-relaxing")
JAPANESE = "ご予約はお電話またはフォームから。営業時間：10時〜19時。"


def _slug(domain: str) -> str:
    return domain.split(".", 1)[0].replace("-", "")


def _ids(domain: str) -> dict[str, str]:
    h = hashlib.sha256(domain.encode()).hexdigest()
    return {"id": str(int(h[:7], 16)), "ID": h[:8].upper(), "uuid": h[8:40]}


def booking_embed(tool: str, embed: str, business: Business, domain: str) -> str:
    """The HTML a site owner pastes to offer `tool` in the given style (falls back to a link
    when the vendor has no such embed)."""
    table = EMBEDS[tool]
    slug = _slug(domain)
    fill = {"slug": slug, "Slug": slug.capitalize(), "domain": domain, "name": escape(business.name),
            **_ids(domain)}
    if embed == "script" and "script" in table:
        return table["script"].format(**fill)
    if embed == "popup" and "popup" in table:
        return table["popup"].format(**fill)
    if embed == "iframe" and "iframe" in table:
        url = escape(table["iframe"].format(**fill))
        return (f'<iframe src="{url}" title="Online booking" width="100%" height="800" '
                'frameborder="0" loading="lazy"></iframe>')
    url = escape(table["link"].format(**fill))
    if embed == "popup":
        return (f'<a href="#book" class="btn btn-primary" onclick="window.open(\'{url}\', '
                "'booking', 'width=640,height=800');return false;\">Book now</a>")
    return f'<a href="{url}" class="btn btn-primary" target="_blank" rel="noopener">Book online</a>'


def _take(blob: str, rng: random.Random, n: int) -> str:
    if n <= 0:
        return ""
    start = rng.randrange(0, max(1, len(blob) - n))
    return blob[start:start + n]


def _svg(rng: random.Random, n_bytes: int) -> str:
    count = max(1, n_bytes // 60)
    start = rng.randrange(0, max(1, len(SVG_PATHS) - count))
    return ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" aria-hidden="true">'
            + "".join(SVG_PATHS[start:start + count]) + "</svg>")


def render_page(business: Business, profile: SiteProfile, domain: str) -> str:
    """The home page's HTML as text (deterministic per business)."""
    rng = random.Random(f"site:{domain}")
    name = escape(business.name)
    target = profile.size_kb * 1024
    modern = profile.layout != "table"
    builder = profile.layout == "builder"
    wix = builder and (profile.booking_tool == "wix_bookings" or rng.random() < 0.6)
    ids = _ids(domain)
    slug = _slug(domain)

    head: list[str] = []
    charset_decl = _charset_declaration(profile, random.Random(f"site:{domain}:charset"))
    if charset_decl in ("meta", "both"):
        head.append(f'<meta charset="{profile.charset}">')
    elif charset_decl == "http-equiv":
        head.append('<meta http-equiv="Content-Type" content="text/html; '
                    f'charset={profile.charset}">')
    if profile.viewport:
        head.append('<meta name="viewport" content="width=device-width, initial-scale=1">')
    head.append(f"<title>{name} | {escape(business.industry.title())} in "
                f"{escape(business.city)}</title>")
    if modern or rng.random() < 0.3:
        head.append(f'<meta name="description" content="{name} — {escape(business.industry)} '
                    f'in {escape(business.city)}, {escape(business.state)}.">')
    if wix:
        head.append('<meta name="generator" content="Wix.com Website Builder">')
        head.append('<script src="https://static.parastorage.com/unpkg/react@18.3.1/umd/'
                    'react.production.min.js"></script>')
    elif builder:
        head.append("<!-- This is Squarespace. -->")
        head.append('<script src="https://static1.squarespace.com/static/vta/5c5a519771c10ba3470d8101/'
                    'scripts/site-bundle.js"></script>')
    head.append(f"<style>{_take(CSS_BLOB, rng, int(target * 0.30))}</style>")
    if profile.analytics:
        snippet = rng.choices(ANALYTICS_SNIPPETS, ANALYTICS_WEIGHTS)[0]
        head.append(snippet.format(domain=domain, **ids))
    if profile.structured_data:
        head.append(
            '<script type="application/ld+json">{"@context":"https://schema.org","@type":'
            f'"LocalBusiness","name":"{name}","telephone":"{business.phone}","address":'
            f'{{"@type":"PostalAddress","streetAddress":"{escape(business.street)}",'
            f'"addressLocality":"{escape(business.city)}"}}}}</script>'
        )

    body: list[str] = []
    nav = ('<a href="/">Home</a> <a href="/services">Services</a> <a href="/about">About</a> '
           '<a href="/contact">Contact</a>')
    logo = _svg(rng, int(target * 0.04))
    services = "".join(
        f"<li><h3>{escape(s)}</h3><p>{' '.join(rng.sample(SENTENCES, 2))}</p></li>"
        for s in rng.sample(SERVICES, 6)
    )
    booking = ""
    if profile.booking_tool:
        booking = booking_embed(profile.booking_tool, profile.embed or "link", business, domain)
    phone = (f'<p>Call us at <a href="tel:{business.phone}">{business.phone}</a> to book your '
             "appointment.</p>" if profile.phone_booking
             else f'<p>Phone: <a href="tel:{business.phone}">{business.phone}</a></p>')
    forms: list[str] = []
    if profile.has_contact_form:
        forms.append(
            '<form class="contact-form" action="/contact" method="post"><label>Name <input '
            'type="text" name="your-name" required></label><label>Email <input type="email" '
            'name="your-email" required></label><label>Message <textarea name="your-message" '
            'rows="5"></textarea></label><button type="submit">Send</button></form>'
        )
    if rng.random() < 0.35:
        forms.append('<form class="newsletter" action="https://example.us21.list-manage.com/'
                     'subscribe/post?u=abc&amp;id=def" method="post"><input type="email" '
                     'name="EMAIL" placeholder="Your email"><button>Subscribe</button></form>')
    if rng.random() < 0.2:
        forms.append('<form role="search" action="/search"><input type="search" name="q" '
                     'placeholder="Search"></form>')
    social = ""
    if profile.social:
        picks = rng.sample(SOCIAL, rng.randint(1, 3))
        social = " ".join(f'<a href="{u.format(slug=slug)}" aria-label="{n}">{n}</a>'
                          for n, u in picks)
    decoys = " ".join(d.format(domain=domain) for d in rng.sample(DECOYS, rng.randint(0, 2)))
    flavour = JAPANESE if profile.charset == "shift_jis" else rng.choice(ACCENTED)
    address = (f"<address>{escape(business.street)}, {escape(business.city)}, "
               f"{escape(business.state)} {escape(business.postal_code)}</address>")
    cta = "" if not profile.booking_tool else '<p class="cta">Book online in a minute.</p>'
    intro = " ".join(rng.sample(SENTENCES, 4))

    if profile.layout == "table":
        body.append(
            '<center><table width="760" bgcolor="#ffffff" cellpadding="4" cellspacing="0" '
            f'border="0"><tr><td>{logo}<font face="Arial" size="5"><b>{name}</b></font></td></tr>'
            f'<tr><td bgcolor="#eeeeee"><font face="Arial" size="2">{nav}</font></td></tr>'
            f'<tr><td><table width="100%"><tr><td valign="top"><p>{intro}</p><p>{flavour}</p>'
            f"{cta}<ul>{services}</ul>{booking}{phone}{''.join(forms)}</td></tr></table></td></tr>"
            f"<tr><td>{address}{social}{decoys}</td></tr></table></center>"
        )
    elif wix:
        body.append(
            f'<div id="SITE_CONTAINER"><div id="main_MF"><div id="SITE_HEADER" class="comp-'
            f'{ids["ID"].lower()}"><div data-testid="richTextElement"><h1>{name}</h1></div>'
            f'{logo}<nav>{nav}</nav></div><main id="PAGES_CONTAINER"><section class="wixui-section">'
            f"<p>{intro}</p><p>{flavour}</p>{cta}<ul>{services}</ul>{booking}{phone}"
            f"{''.join(forms)}</section></main><footer id=\"SITE_FOOTER\">{address}{social}"
            f"{decoys}</footer></div></div>"
        )
    else:
        cls = "sqs-block-content" if builder else "container"
        body.append(
            f'<header class="site-header">{logo}<nav>{nav}</nav></header><main><section '
            f'class="hero {cls}"><h1>{name}</h1><p>{intro}</p><p>{flavour}</p>{cta}</section>'
            f'<section class="services"><h2>Our services</h2><ul>{services}</ul></section>'
            f'<section class="booking">{booking}{phone}</section><section class="contact">'
            f"{''.join(forms)}</section></main><footer>{address}{social}{decoys}</footer>"
        )
    # Icons and scripts make up the rest of the weight, as on real sites.
    used = sum(map(len, head)) + sum(map(len, body)) + 200
    rest = max(0, target - used)
    body.append(_svg(rng, int(rest * 0.2)))
    cards: list[str] = []
    budget = int(rest * 0.35)
    start = rng.randrange(len(CARDS))
    while budget > 0:
        card = CARDS[(start + len(cards)) % len(CARDS)]
        cards.append(card)
        budget -= len(card)
    body.append(f'<section class="gallery"><div class="grid">{"".join(cards)}</div></section>')
    body.append(f"<script>{_take(JS_BLOB, rng, int(rest * 0.42))}</script>")
    lang = ' lang="ja"' if profile.charset == "shift_jis" else ' lang="en"'
    doctype = '<!DOCTYPE html>' if modern else (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">')
    return (f"{doctype}\n<html{lang}><head>{''.join(head)}</head>\n<body>{''.join(body)}"
            "</body></html>\n")


def _charset_declaration(profile: SiteProfile, rng: random.Random) -> str:
    """header | meta | http-equiv | both (header and meta) — where the charset is declared."""
    if profile.charset == "utf-8":
        return rng.choices(("both", "header", "meta"), (50, 30, 20))[0]
    return rng.choices(("header", "meta", "http-equiv", "both"), (35, 30, 15, 20))[0]


def render_site(business: Business, domain: str | None = None) -> tuple[bytes, str]:
    """Home page (body bytes in the site's charset, Content-Type header) without faults or
    redirects: what the benchmarks parse."""
    domain = domain or business.domain or f"business{business.index}.com"
    profile = business.site or random_site_profile(random.Random(domain))
    text = render_page(business, profile, domain)
    decl = _charset_declaration(profile, random.Random(f"site:{domain}:charset"))
    content_type = "text/html" if decl in ("meta", "http-equiv") else (
        f"text/html; charset={profile.charset}")
    return text.encode(_codec(profile.charset), "xmlcharrefreplace"), content_type


def _codec(charset: str) -> str:
    return {"iso-8859-1": "latin-1", "shift_jis": "shift_jis"}.get(charset, charset)


def sample_business(index: int, seed: int = 7) -> Business:
    """A standalone business with a random site profile, for benchmarks and tests that need
    pages without the full sandbox dataset."""
    rng = random.Random(f"{seed}:{index}")
    base = rng.choice(("bella", "luxe", "glow", "zen", "urban", "pure", "studio", "vita"))
    domain = f"{base}{rng.choice(('salon', 'spa', 'clinic', 'studio', 'dental'))}{index}.com"
    return Business(
        index=index, name=f"{base.title()} {rng.choice(('Salon', 'Spa', 'Clinic', 'Studio'))}",
        industry=rng.choice(("salon", "spa", "clinic", "fitness studio", "dentist")),
        street=f"{rng.randint(1, 9999)} Main St", city="Austin", state="TX",
        postal_code="78701", country="US", phone=f"+1512555{rng.randint(0, 9999):04d}",
        domain=domain, owner_first_name="Ana", owner_last_name="Núñez", employees=5,
        founded_year=2012, rating=4.6, review_count=120,
        site=random_site_profile(rng),
    )


# --- serving ------------------------------------------------------------------------------------


class _PageCache:
    """Rendered bodies per (domain, path), bounded by total bytes (least recently used out)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self.items: OrderedDict[tuple[str, str], tuple[bytes, str]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> tuple[bytes, str] | None:
        with self.lock:
            item = self.items.get(key)
            if item is not None:
                self.items.move_to_end(key)
            return item

    def put(self, key: tuple[str, str], item: tuple[bytes, str]) -> None:
        with self.lock:
            if key in self.items:
                return
            self.items[key] = item
            self.size += len(item[0])
            while self.size > self.budget and self.items:
                _, old = self.items.popitem(last=False)
                self.size -= len(old[0])


PAGE_CACHE = _PageCache(CACHE_BUDGET_BYTES)


def _redirect(location: str, status: int = 301) -> Response:
    return Response(b"", status_code=status, headers={"location": location})


async def _never_ends(head: bytes) -> AsyncIterator[bytes]:
    yield head
    loop = asyncio.get_running_loop()
    end = loop.time() + NEVER_ENDS_S
    while loop.time() < end:
        await asyncio.sleep(0.5)
        yield b"<p>" + b"." * 64 + b"</p>\n"


async def _huge() -> AsyncIterator[bytes]:
    chunk = JS_BLOB[:65536].encode()
    yield b"<!DOCTYPE html><html><head><title>Huge</title></head><body><script>"
    sent = 0
    while sent < HUGE_BYTES:
        yield chunk
        sent += len(chunk)
        await asyncio.sleep(0)
    yield b"</script></body></html>"


async def site_response(
    business: Business, host: str, path: str, query: str, scheme: str | None = None
) -> Response:
    """The response of `business`'s website to GET {scheme}://{host}{path}?{query}.

    `scheme` is the scheme the client asked for (the sandbox only speaks plain HTTP, so the
    server passes X-Forwarded-Proto); when unknown, http->https redirects are not emulated."""
    profile = business.site
    domain = (business.domain or host).lower()
    host = host.lower().split(":", 1)[0]
    if profile is None or profile.fault == "no_site":
        return Response(b"<html><body><h1>404 Not Found</h1></body></html>", 404,
                        headers={"content-type": "text/html"})
    here = scheme or "http"
    canonical_scheme = "https" if profile.https else "http"

    if profile.redirect == "www" and host == domain:
        return _redirect(f"{here if scheme else canonical_scheme}://www.{domain}{path}")
    if scheme is not None and scheme != canonical_scheme and (
        profile.redirect == "https" or canonical_scheme == "http"
    ):
        return _redirect(f"{canonical_scheme}://{host}{path}")
    if profile.redirect == "internal" and path == "/":
        return _redirect(INTERNAL_TARGET, 302)
    if profile.redirect == "chain" and path in CHAIN[:-1]:
        nxt = CHAIN[CHAIN.index(path) + 1]
        return _redirect(nxt, 302 if len(nxt) % 2 else 301)
    final_path = CHAIN[-1] if profile.redirect == "chain" else "/"
    if path != final_path and not (path in ("", "/index.html") and final_path == "/"):
        return Response(b"<html><body><h1>Not found</h1></body></html>", 404,
                        headers={"content-type": "text/html; charset=utf-8"})

    fault = profile.fault
    if fault == "timeout":
        await asyncio.sleep(TIMEOUT_SLEEP_S)
    elif fault == "server_error":
        return Response(b"<html><body><h1>500 Internal Server Error</h1></body></html>", 500,
                        headers={"content-type": "text/html"})
    elif fault == "not_html":
        return Response(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", 200,
                        headers={"content-type": "application/pdf"})
    elif fault == "huge":
        return StreamingResponse(_huge(), headers={"content-type": "text/html; charset=utf-8"})

    key = (domain, final_path)
    cached = PAGE_CACHE.get(key)
    if cached is None:
        cached = render_site(business, domain)
        PAGE_CACHE.put(key, cached)
    body, content_type = cached
    if fault == "never_ends":
        return StreamingResponse(_never_ends(body[: len(body) // 2]),
                                 headers={"content-type": content_type})
    return Response(body, 200, headers={"content-type": content_type})
