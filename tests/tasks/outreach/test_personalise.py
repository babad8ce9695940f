"""AI openings through the real openai SDK against the sandbox over HTTP: used when good,
the template's opening (with the reason) on timeout, 429 or an invented link; usage metered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from leadflow.settings import Settings, get_settings, reset_settings_cache
from models import ApiConfig, ApiReservation, ApiUsage, Campaign, Email
from models.db import session_scope
from tasks.outreach.compose import AI_LIMIT_NOTE, AI_TOKENS_PER_OPENING, compose_emails
from tasks.outreach.defaults import create_campaign
from tasks.outreach.personalise import check_opening, personal_openings
from tasks.usage import Plan, ensure_api_configs
from tests.conftest import Sandbox
from tests.tasks.outreach.conftest import NOW, add_leads, schedule_emails

pytestmark = pytest.mark.usefixtures("tracking_secret")

FACTS: dict[str, Any] = {"company_name": "Bella Salon", "industry": "salon", "city": "Austin",
                         "website": "https://www.bella.example/", "booking_tool": "Fresha",
                         "competitor_tool": "Fresha", "scenario": "competitor_booking",
                         "phone": "+1 512 555 0100"}
CAMPAIGN = Campaign(id=1, sender_name="Sam at Booknex")


@pytest.fixture()
def ai(sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """Settings pointed at the sandbox, no SDK retries, a short timeout; faults cleared."""
    monkeypatch.setenv("LEADFLOW_AI_MAX_RETRIES", "0")
    monkeypatch.setenv("LEADFLOW_AI_TIMEOUT_S", "1")
    reset_settings_cache()
    sandbox_env.set_faults({})
    yield sandbox_env
    sandbox_env.set_faults({})


def script_replies(sandbox: Sandbox, replies: list[str]) -> None:
    httpx.post(f"{sandbox.api('openai')}/_sandbox/replies", json={"replies": replies},
               timeout=5).raise_for_status()


def test_a_good_opening_is_used_and_its_tokens_counted(ai: Sandbox) -> None:
    openings = personal_openings({1: FACTS, 2: {**FACTS, "company_name": "Nova Spa"}}, CAMPAIGN)
    assert {o.status for o in openings.values()} == {"used"}
    assert openings[1].text and "Bella Salon" in openings[1].text
    assert openings[2].text and "Nova Spa" in openings[2].text
    assert all(o.tokens > 0 and o.status_code == 200 for o in openings.values())
    call = openings[1].api_call()
    assert call is not None and (call.source, call.units) == ("openai", openings[1].tokens)


def test_timeout_falls_back_with_the_reason(ai: Sandbox) -> None:
    ai.set_faults({"openai": {"sequence": ["timeout"]}})
    opening = personal_openings({1: FACTS}, CAMPAIGN)[1]
    assert (opening.text, opening.status, opening.note) == (None, "fallback", "timeout after 1 s")


def test_rate_limit_falls_back_with_the_reason(ai: Sandbox) -> None:
    ai.set_faults({"openai": {"sequence": ["429"]}})
    opening = personal_openings({1: FACTS}, CAMPAIGN)[1]
    assert (opening.status, opening.note, opening.status_code) == (
        "fallback", "rate limited (HTTP 429)", 429)


def test_an_invented_link_is_rejected(ai: Sandbox) -> None:
    script_replies(ai, ["Loved Bella Salon, book a demo at https://booknex-deals.example/x now.",
                        "Loved what I saw on bella.example/services, Bella Salon."])
    openings = personal_openings({1: FACTS}, CAMPAIGN)
    assert (openings[1].status, openings[1].note) == ("fallback",
                                                      "rejected: a link not in the facts")
    assert openings[1].tokens > 0  # the tokens were spent all the same
    assert personal_openings({1: FACTS}, CAMPAIGN)[1].status == "used"  # the lead's own site


def test_a_missing_key_falls_back_without_calling(ai: Sandbox,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADFLOW_OPENAI_API_KEY")
    monkeypatch.setenv("LEADFLOW_OPENAI_API_KEY", "")
    reset_settings_cache()
    ai.reset_stats()
    opening = personal_openings({1: FACTS}, CAMPAIGN)[1]
    assert (opening.status, opening.note, opening.api_call()) == (
        "fallback", "no OpenAI API key configured", None)
    assert ai.stats()["targets"].get("openai") is None


def test_a_rejected_key_never_appears_in_the_note(ai: Sandbox,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_OPENAI_API_KEY", "invalid-sk-very-secret-value")
    reset_settings_cache()
    opening = personal_openings({1: FACTS}, CAMPAIGN)[1]
    assert opening.note == "HTTP 401 from the AI endpoint"


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("", "rejected: empty"),
        ("x" * 401, "rejected: longer than 400 characters"),
        ("Hi {{firstName}}, lovely salon.", "rejected: unfilled placeholder"),
        ("Hi [First Name], lovely salon.", "rejected: unfilled placeholder"),
        ("Hi <name>, lovely salon.", "rejected: unfilled placeholder"),
        ("Great salon.\n\nSecond paragraph.", "rejected: more than one paragraph"),
        ("Write to owner@bella.example today.", "rejected: an email address not in the facts"),
        ("See www.other.example for more.", "rejected: a link not in the facts"),
        ("Visit booknex.io today.", "rejected: a link not in the facts"),
        ("Call us on (512) 555-0199 today.", "rejected: a phone number not in the facts"),
        ('"Bella Salon in Austin\ncaught my eye."', None),
        ("Your site www.bella.example looks great.", None),
        ("Bella Salon opened in 2019 and has 120 reviews.", None),
    ],
)
def test_check_opening(reply: str, why: str | None) -> None:
    facts = {"company": "Bella Salon", "website": "https://www.bella.example/"}
    text, reason = check_opening(reply, facts, 400)
    assert reason == why
    if why is None:
        assert text and "\n" not in text and not text.startswith('"')


def _seed(url: str, ai_on: bool) -> list[int]:
    with session_scope(url) as session:
        campaign_id = create_campaign(session, ai_personalisation=ai_on)
        lead_ids = add_leads(session, 3, booking_tools=["fresha"])
        return schedule_emails(session, campaign_id, lead_ids)


def test_compose_emails_uses_ai_openings_and_meters_them(ai: Sandbox, pg_clean: str) -> None:
    ai.set_faults({"openai": {"sequence": ["ok", "429", "ok"]}})
    ids = _seed(pg_clean, ai_on=True)
    report = compose_emails(pg_clean, ids, NOW)
    assert (report.composed, report.ai_used, report.ai_fallback) == (3, 2, 1)
    settings: Settings = get_settings()
    with session_scope(pg_clean) as session:
        rows = {e.id: e for e in session.scalars(select(Email).where(Email.id.in_(ids)))}
        usage = session.scalars(select(ApiUsage).where(ApiUsage.source == "openai")).all()
        plan = session.get(ApiConfig, "openai")
    used = [r for r in rows.values() if r.ai_status == "used"]
    fell = [r for r in rows.values() if r.ai_status == "fallback"]
    assert len(used) == 2 and len(fell) == 1 and fell[0].ai_note == "rate limited (HTTP 429)"
    leads = sorted(r.lead_id for r in rows.values())

    def opening(row: Email) -> str:
        assert row.body_text
        return row.body_text.split("\n\n")[1]

    for row in used:  # the sandbox's sentence, not the template's
        company = f"Bella Salon {leads.index(row.lead_id)}"
        assert company in opening(row)
        assert opening(row) != f"I noticed {company} takes bookings through Fresha."
    company = f"Bella Salon {leads.index(fell[0].lead_id)}"
    assert opening(fell[0]) == f"I noticed {company} takes bookings through Fresha."
    assert sorted(u.status_code or 0 for u in usage) == [200, 200, 429]
    assert sum(u.units for u in usage) == report.ai_tokens > 0
    assert plan is not None and plan.unit == "token"
    for u in usage:
        assert u.cost == pytest.approx(
            u.units * settings.openai_price_per_1k_tokens / 1000, abs=1e-6)


def test_campaigns_without_ai_never_call_the_endpoint(ai: Sandbox, pg_clean: str) -> None:
    ai.reset_stats()
    ids = _seed(pg_clean, ai_on=False)
    report = compose_emails(pg_clean, ids, NOW)
    assert (report.composed, report.ai_used, report.ai_fallback) == (3, 0, 0)
    assert ai.stats()["targets"].get("openai") is None


def test_openings_past_the_monthly_token_limit_fall_back_and_the_reservation_is_settled(
    ai: Sandbox, pg_clean: str
) -> None:
    """The tokens of the batch's openings are set aside before the calls: a plan with room
    for two openings gets two AI calls, the third email keeps the template's opening with the
    reason, and once the calls are recorded nothing stays set aside."""
    with session_scope(pg_clean) as session:
        ensure_api_configs(session, {"openai": Plan(
            monthly_limit=2 * AI_TOKENS_PER_OPENING + 10, cost_per_unit=0.0, unit="token")})
    ids = _seed(pg_clean, ai_on=True)
    ai.reset_stats()
    report = compose_emails(pg_clean, ids, NOW)
    assert (report.composed, report.ai_used, report.ai_fallback) == (3, 2, 1)
    assert ai.stats()["targets"]["openai"]["requests"] == 2
    with session_scope(pg_clean) as session:
        notes = [e.ai_note for e in session.scalars(select(Email).where(Email.id.in_(ids)))]
        assert notes.count(AI_LIMIT_NOTE) == 1
        assert session.scalars(select(ApiReservation)).all() == []
        used = sum(u.units for u in session.scalars(
            select(ApiUsage).where(ApiUsage.source == "openai")))
    assert used == report.ai_tokens > 0


def test_a_batch_that_fails_after_its_ai_calls_meters_them_and_frees_the_rest(
    ai: Sandbox, pg_clean: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.outreach.compose as compose_module

    ids = _seed(pg_clean, ai_on=True)

    def broken_write(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(compose_module, "_write", broken_write)
    with pytest.raises(RuntimeError, match="database went away"):
        compose_emails(pg_clean, ids, NOW)
    with session_scope(pg_clean) as session:
        assert session.scalars(select(ApiReservation)).all() == []
        calls = session.scalars(select(ApiUsage).where(ApiUsage.source == "openai")).all()
    assert len(calls) == 3 and all(c.units > 0 for c in calls)
