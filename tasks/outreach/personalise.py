"""AI-written personal openings (optional per campaign), with the `openai` SDK.

The model only sees facts the pipeline found (company, industry, city, website, booking tool,
scenario). Its sentence is checked before use: length, one paragraph, no unfilled placeholders,
no URL, email address or phone number that is not among those facts. Any error, timeout, 429 or
rejected sentence gives a fallback (the template's own opening) with the reason; a reason never
holds the API key or the provider's message (which can quote part of the key)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import openai

from clients.http import ApiCall
from clients.keys import resolve_api_key
from leadflow.settings import Settings, get_settings
from models import Campaign

ENDPOINT = "chat/completions"
# What each scenario tells the model about the lead (the angle of the email).
SCENARIO_HINTS: dict[str, str] = {
    "no_website": "has no website",
    "competitor_booking": "takes online bookings with the booking tool named above",
    "books_online_well": "already takes online bookings on a modern website",
    "phone_only_booking": "takes bookings by phone only",
    "no_online_booking": "has a website without online booking",
    "general": "is a local business",
}
PROMPT_FACTS = (("company", "company_name"), ("industry", "industry"), ("city", "city"),
                ("website", "website"), ("booking tool", "booking_tool"))
SYSTEM_PROMPT = (
    "You write the opening sentence of a short cold email from {sender}, who sells online "
    "booking software, to the owner of a local business. Write one friendly, specific "
    "sentence of at most 30 words using only the facts given. No greeting, no sign-off, no "
    "links, no email addresses, no phone numbers, no placeholders, no quotes."
)

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{[^}]*\}|\[[^\]]*\]|<[^>]*>")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"']+|\b(?:[a-z0-9-]+\.)+[a-z]{2,24}(?:/[^\s]*)?",
                  re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d")


@dataclass(frozen=True)
class Opening:
    """The AI opening of one email: `text` when used, else None with the reason in `note`."""

    text: str | None
    status: str  # used | fallback
    note: str | None = None
    tokens: int = 0  # total tokens billed for the call (also for a rejected sentence)
    status_code: int | None = None  # HTTP status of the call; None = no answer
    called_at: datetime | None = None  # None = no call was made

    def api_call(self) -> ApiCall | None:
        """The call to meter in api_usage (units = total tokens), if one was made."""
        if self.called_at is None:
            return None
        return ApiCall("openai", ENDPOINT, self.status_code, self.tokens, self.called_at)


def fallback(note: str) -> Opening:
    return Opening(None, "fallback", note[:300])


def prompt_facts(facts: Mapping[str, Any]) -> dict[str, str]:
    """The facts the model is told (and the only contact details it may repeat)."""
    out = {label: " ".join(str(facts[key]).split())
           for label, key in PROMPT_FACTS if facts.get(key)}
    scenario = facts.get("scenario")
    out["situation"] = SCENARIO_HINTS.get(str(scenario), SCENARIO_HINTS["general"])
    return out


def build_messages(facts: Mapping[str, Any], sender: str) -> list[dict[str, str]]:
    lines = [f"{label}: {value}" for label, value in prompt_facts(facts).items()]
    user = "Write the opening sentence for this business.\n" + "\n".join(lines)
    return [{"role": "system", "content": SYSTEM_PROMPT.format(sender=sender)},
            {"role": "user", "content": user}]


def _bare(url: str) -> str:
    url = url.lower().split("://", 1)[-1]
    return url.removeprefix("www.").rstrip("/.,;:!?")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def check_opening(text: str | None, facts: Mapping[str, str], max_chars: int
                  ) -> tuple[str | None, str | None]:
    """(the cleaned sentence, None) when it may be used, else (None, why not)."""
    text = (text or "").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    if re.search(r"\n[ \t]*\n", text):
        return None, "rejected: more than one paragraph"
    text = " ".join(text.split())
    if not text:
        return None, "rejected: empty"
    if len(text) > max_chars:
        return None, f"rejected: longer than {max_chars} characters"
    if _PLACEHOLDER.search(text):
        return None, "rejected: unfilled placeholder"
    known = " ".join(facts.values()).lower()
    if any(m.group(0).lower() not in known for m in _EMAIL.finditer(text)):
        return None, "rejected: an email address not in the facts"
    without_emails = _EMAIL.sub(" ", text)
    known_sites = {_bare(v) for v in facts.values() if _URL.fullmatch(v.strip())}
    for m in _URL.finditer(without_emails):
        bare = _bare(m.group(0))
        # The lead's own site, or a page of it, is a fact; any other address is invented.
        if not any(bare == site or bare.startswith(site + "/") for site in known_sites):
            return None, "rejected: a link not in the facts"
    known_digits = {_digits(v) for v in facts.values() if len(_digits(v)) >= 7}
    for m in _PHONE.finditer(without_emails):
        digits = _digits(m.group(0))
        if len(digits) >= 7 and digits not in known_digits:
            return None, "rejected: a phone number not in the facts"
    return text, None


def _error_note(exc: BaseException, settings: Settings) -> tuple[str, int | None]:
    # Status and class only: provider messages can quote part of the API key.
    if isinstance(exc, openai.APITimeoutError):
        return f"timeout after {settings.ai_timeout_s:g} s", None
    if isinstance(exc, openai.RateLimitError):
        return "rate limited (HTTP 429)", 429
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code} from the AI endpoint", exc.status_code
    if isinstance(exc, openai.APIConnectionError):
        return "could not connect to the AI endpoint", None
    return f"AI call failed ({type(exc).__name__})", None


async def _one(client: openai.AsyncOpenAI, facts: Mapping[str, Any], sender: str,
               settings: Settings, gate: asyncio.Semaphore) -> Opening:
    async with gate:
        called_at = datetime.now(UTC)
        try:
            response = await client.chat.completions.create(
                model=settings.openai_model, messages=build_messages(facts, sender),  # type: ignore[arg-type]
                max_tokens=120, temperature=0.7,
            )
        except Exception as exc:  # noqa: BLE001 - every failure falls back to the template
            note, status = _error_note(exc, settings)
            return Opening(None, "fallback", note, 0, status, called_at)
    tokens = response.usage.total_tokens if response.usage else 0
    content = response.choices[0].message.content if response.choices else None
    text, why = check_opening(content, prompt_facts(facts), settings.ai_max_opening_chars)
    if text is None:
        return Opening(None, "fallback", why, tokens, 200, called_at)
    return Opening(text, "used", None, tokens, 200, called_at)


async def personal_openings_async(
    facts_by_email: Mapping[int, Mapping[str, Any]], campaign: Campaign,
    settings: Settings | None = None,
) -> dict[int, Opening]:
    settings = settings or get_settings()
    if not facts_by_email:
        return {}
    try:
        key = resolve_api_key("openai", settings)
    except RuntimeError:
        key, missing = None, "could not load the OpenAI key from its Secret block"
    else:
        missing = "no OpenAI API key configured"
    if key is None:
        return {email_id: fallback(missing) for email_id in facts_by_email}
    gate = asyncio.Semaphore(max(1, settings.ai_concurrency))
    async with openai.AsyncOpenAI(
        api_key=key, base_url=settings.openai_base_url, timeout=settings.ai_timeout_s,
        max_retries=settings.ai_max_retries,
    ) as client:
        ids = list(facts_by_email)
        results = await asyncio.gather(
            *(_one(client, facts_by_email[i], campaign.sender_name, settings, gate) for i in ids)
        )
    return dict(zip(ids, results, strict=True))


def personal_openings(
    facts_by_email: Mapping[int, Mapping[str, Any]], campaign: Campaign,
    settings: Settings | None = None,
) -> dict[int, Opening]:
    """One AI opening (or a fallback with its reason) per email id, `settings.ai_concurrency`
    calls at a time. `facts_by_email` values are `lead_facts` plus "scenario"."""
    coro = personal_openings_async(facts_by_email, campaign, settings)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside an event loop (an async flow): run on a loop of our own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
