"""Tests of tasks.scoring: each component's points, tiers at the thresholds, custom weights and
thresholds, and the vectorised result against a plain per-row reference."""

from __future__ import annotations

import math
import random
from typing import Any

import pandas as pd
import pytest

from leadflow.settings import reset_settings_cache
from tasks.scoring import (
    COMPONENTS,
    GENERIC_LOCAL_PARTS,
    ScoringWeights,
    TierThresholds,
    assign_tiers,
    score_leads,
)


def lead(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"source": "csv", "source_record_id": "r1", "company_name": "Acme"}
    base.update(overrides)
    return base


def breakdown_of(**overrides: Any) -> dict[str, int]:
    out = score_leads(pd.DataFrame([lead(**overrides)]), thresholds=TierThresholds())
    return out["score_breakdown"].iloc[0]


def test_an_empty_lead_scores_zero_and_is_cold() -> None:
    out = score_leads(pd.DataFrame([lead()]), thresholds=TierThresholds())
    assert out["quality_score"].iloc[0] == 0
    assert out["tier"].iloc[0] == "cold"
    assert out["score_breakdown"].iloc[0] == {c: 0 for c in COMPONENTS}


def test_a_perfect_lead_scores_100_and_is_hot() -> None:
    out = score_leads(
        pd.DataFrame(
            [
                lead(
                    email="jane@acme.com", email_status="valid", email_confidence=100,
                    website="https://acme.com", website_reachable=True,
                    booking_tools=["vagaro"], booking_keyword_count=9,
                    phone="+1 512 555 0100", address="1 Main St", contact_first_name="Jane",
                    digital_maturity=100, has_contact_form=True,
                )
            ]
        ),
        thresholds=TierThresholds(),
    )  # fmt: skip
    assert out["quality_score"].iloc[0] == 100
    assert out["tier"].iloc[0] == "hot"
    assert out["score_breakdown"].iloc[0] == {
        "email_quality": 50, "website_presence": 15, "booking_intent": 10,
        "contact_info": 10, "digital_maturity": 15,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("email", "status", "confidence", "points"),
    [
        ("jane@acme.com", "valid", 100, 50),  # 35 status + 10 confidence + 5 personal
        ("jane@acme.com", "valid", 50, 45),
        ("info@acme.com", "valid", 100, 45),  # role address: no personal bonus
        ("info2@acme.com", "valid", 0, 35),  # trailing digits still a role address
        ("jane@acme.com", "accept_all", 0, 25),
        ("jane@gmail.com", "webmail", 0, 20),
        ("jane@acme.com", "unknown", 0, 15),
        ("jane@acme.com", None, None, 15),  # present but unverified
        ("jane@acme.com", "invalid", 100, 0),
        ("jane@mailinator.com", "disposable", 100, 0),
        (None, "valid", 100, 0),  # a status without an email earns nothing
        ("  ", "valid", 100, 0),
    ],
)
def test_email_quality_points_follow_status_confidence_and_personal_address(
    email: str | None, status: str | None, confidence: int | None, points: int
) -> None:
    got = breakdown_of(email=email, email_status=status, email_confidence=confidence)
    assert got["email_quality"] == points


@pytest.mark.parametrize(
    ("website", "reachable", "points"),
    [("https://a.com", True, 15), ("https://a.com", None, 10), ("https://a.com", False, 5),
     (None, True, 0), ("", None, 0)],
)  # fmt: skip
def test_website_presence_points(website: str | None, reachable: bool | None, points: int) -> None:
    assert breakdown_of(website=website, website_reachable=reachable)["website_presence"] == points


@pytest.mark.parametrize(
    ("tools", "keywords", "points"),
    [(["calendly"], 0, 6), ([], 2, 2), ([], 20, 4), (["square"], 4, 10), (None, None, 0)],
)
def test_booking_intent_points(tools: list[str] | None, keywords: int | None, points: int) -> None:
    got = breakdown_of(booking_tools=tools, booking_keyword_count=keywords)
    assert got["booking_intent"] == points


@pytest.mark.parametrize(
    ("fields", "points"),
    [({"phone": "512-555-0100"}, 4), ({"address": "1 Main St"}, 3),
     ({"contact_last_name": "Doe"}, 3), ({"phone": "1", "address": "x", "contact_first_name": "J"},
     10)],
)  # fmt: skip
def test_contact_info_points(fields: dict[str, str], points: int) -> None:
    assert breakdown_of(**fields)["contact_info"] == points


@pytest.mark.parametrize(
    ("maturity", "form", "points"),
    [(100, False, 12), (50, False, 6), (0, True, 3), (100, True, 15), (None, None, 0)],
)
def test_digital_maturity_points(maturity: int | None, form: bool | None, points: int) -> None:
    got = breakdown_of(digital_maturity=maturity, has_contact_form=form)
    assert got["digital_maturity"] == points


def test_tiers_switch_exactly_at_the_thresholds() -> None:
    thresholds = TierThresholds(hot=70, warm=40)
    assert list(assign_tiers([100, 70, 69, 40, 39, 0], thresholds)) == [
        "hot", "hot", "warm", "warm", "cold", "cold"
    ]  # fmt: skip


def test_thresholds_default_to_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_SCORE_HOT_THRESHOLD", "20")
    monkeypatch.setenv("LEADFLOW_SCORE_WARM_THRESHOLD", "10")
    reset_settings_cache()
    try:
        # 15 (reachable website) is warm under these settings, cold under the defaults.
        out = score_leads(pd.DataFrame([lead(website="https://a.com", website_reachable=True)]))
        assert out["tier"].iloc[0] == "warm"
    finally:
        monkeypatch.undo()
        reset_settings_cache()


def test_custom_weights_and_thresholds_change_points_and_tiers() -> None:
    weights = ScoringWeights(
        email_quality=20, website_presence=40, booking_intent=20, contact_info=10,
        digital_maturity=10,
    )  # fmt: skip
    out = score_leads(
        pd.DataFrame([lead(website="https://a.com", website_reachable=True)]),
        weights=weights,
        thresholds=TierThresholds(hot=90, warm=30),
    )
    assert out["score_breakdown"].iloc[0]["website_presence"] == 40
    assert out["quality_score"].iloc[0] == 40
    assert out["tier"].iloc[0] == "warm"


def test_invalid_weights_and_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="add up to 100"):
        ScoringWeights(email_quality=60)
    with pytest.raises(ValueError, match="warm < hot"):
        TierThresholds(hot=40, warm=40)


def test_scoring_keeps_the_input_untouched_and_handles_an_empty_batch() -> None:
    df = pd.DataFrame([lead()])
    score_leads(df, thresholds=TierThresholds())
    assert "quality_score" not in df.columns
    empty = score_leads(pd.DataFrame(columns=["source", "source_record_id"]))
    assert len(empty) == 0 and {"quality_score", "tier", "score_breakdown"} <= set(empty.columns)


# --- a plain per-row reference, written independently of the vectorised code ---------------

STATUS = {"valid": 0.7, "accept_all": 0.4, "webmail": 0.3, "unknown": 0.2, None: 0.2}


def half_up(x: float) -> int:
    return math.floor(x + 0.5)


def text(v: Any) -> str:
    """Trimmed text; missing (None, or NaN in pandas' string columns) is empty."""
    return v.strip() if isinstance(v, str) else ""


def num(v: Any) -> float:
    """A number clipped to 0..100; missing (None or NaN) counts as 0."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return 0.0
    return min(max(float(v), 0.0), 100.0)


def reference_score(row: dict[str, Any], w: ScoringWeights) -> dict[str, int]:
    email = text(row.get("email"))
    status = text(row.get("email_status")) or None
    share = 0.0
    if email and STATUS.get(status, 0.0) > 0:
        local = email.lower().split("@")[0].split("+")[0].rstrip("0123456789")
        share = (
            STATUS[status]
            + 0.2 * num(row.get("email_confidence")) / 100
            + (0.1 if local not in GENERIC_LOCAL_PARTS else 0.0)
        )
    site = 0.0
    if text(row.get("website")):
        site = {True: 1.0, False: 1 / 3}.get(row.get("website_reachable"), 2 / 3)
    booking = 0.6 * bool(
        isinstance(row.get("booking_tools"), list) and row["booking_tools"]
    ) + 0.1 * min(num(row.get("booking_keyword_count")), 4)
    contact = (
        0.4 * bool(text(row.get("phone")))
        + 0.3 * bool(text(row.get("address")))
        + 0.3 * bool(text(row.get("contact_first_name")) or text(row.get("contact_last_name")))
    )
    digital = 0.8 * num(row.get("digital_maturity")) / 100 + 0.2 * (
        row.get("has_contact_form") is True
    )
    shares = {
        "email_quality": share, "website_presence": site, "booking_intent": booking,
        "contact_info": contact, "digital_maturity": digital,
    }  # fmt: skip
    return {k: half_up(min(max(v, 0.0), 1.0) * getattr(w, k)) for k, v in shares.items()}


def random_frame(n: int, seed: int) -> pd.DataFrame:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append(
            lead(
                source_record_id=str(i),
                email=rnd.choice([None, "", "jane@a.com", "info@a.com", "bookings3@b.org"]),
                email_status=rnd.choice([None, "valid", "invalid", "accept_all", "webmail",
                                         "disposable", "unknown"]),
                email_confidence=rnd.choice([None, 0, 37, 64, 91, 100]),
                website=rnd.choice([None, "", "https://x.com"]),
                website_reachable=rnd.choice([None, True, False]),
                booking_tools=rnd.choice([None, [], ["calendly"], ["fresha", "vagaro"]]),
                booking_keyword_count=rnd.choice([None, 0, 1, 3, 7]),
                phone=rnd.choice([None, "", "512-555-0100"]),
                address=rnd.choice([None, "1 Main St"]),
                contact_first_name=rnd.choice([None, "Ana"]),
                contact_last_name=rnd.choice([None, "Lee"]),
                digital_maturity=rnd.choice([None, 0, 13, 50, 77, 100]),
                has_contact_form=rnd.choice([None, True, False]),
            )
        )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "weights",
    [ScoringWeights(), ScoringWeights(email_quality=30, website_presence=25, booking_intent=25,
                                      contact_info=5, digital_maturity=15)],
)  # fmt: skip
def test_vectorised_scores_equal_a_per_row_reference(weights: ScoringWeights) -> None:
    df = random_frame(500, seed=11)
    thresholds = TierThresholds(hot=60, warm=30)
    out = score_leads(df, weights=weights, thresholds=thresholds)
    for row, (_, got) in zip(df.to_dict("records"), out.iterrows(), strict=True):
        expected = reference_score(row, weights)
        total = sum(expected.values())
        assert got["score_breakdown"] == expected
        assert got["quality_score"] == total
        assert got["tier"] == ("hot" if total >= 60 else "warm" if total >= 30 else "cold")
