"""Lead scoring: a 0-100 quality score and a hot/warm/cold tier for a whole batch at once.

The points table and its rationale are in docs/scoring.md; weights and thresholds are data
(`ScoringWeights`, `TierThresholds`) so they can be tuned without touching the logic.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from leadflow.settings import get_settings

COMPONENTS: tuple[str, ...] = (
    "email_quality",
    "website_presence",
    "booking_intent",
    "contact_info",
    "digital_maturity",
)
TIERS: tuple[str, ...] = ("hot", "warm", "cold")

# Share of the email component earned by each verification status (Hunter's statuses). An email
# that is missing, invalid or disposable earns nothing: we could never send to it.
EMAIL_STATUS_SHARE: dict[str, float] = {
    "valid": 0.7,
    "accept_all": 0.4,
    "webmail": 0.3,
    "unknown": 0.2,
    "unverified": 0.2,  # present but not (yet) verified, e.g. a CSV import
    "invalid": 0.0,
    "disposable": 0.0,
}
EMAIL_CONFIDENCE_SHARE = 0.2  # scaled by confidence/100
EMAIL_PERSONAL_SHARE = 0.1  # a named person's address beats info@

# Role addresses: they reach a shared inbox, not a decision maker, so they earn less.
GENERIC_LOCAL_PARTS: frozenset[str] = frozenset(
    {
        "info", "contact", "hello", "hi", "mail", "email", "office", "admin", "team", "support",
        "sales", "booking", "bookings", "book", "appointments", "appointment", "reception",
        "frontdesk", "front.desk", "enquiries", "enquiry", "inquiries", "inquiry", "help",
        "service", "customerservice", "noreply", "no-reply", "donotreply", "billing",
        "accounts", "marketing", "studio", "salon", "clinic", "spa", "care", "general",
    }
)  # fmt: skip

WEBSITE_REACHABLE_SHARE = 1.0
WEBSITE_UNCHECKED_SHARE = 2 / 3  # listed, not analysed yet: probably fine
WEBSITE_UNREACHABLE_SHARE = 1 / 3  # listed but down: the business exists, its site is neglected

BOOKING_TOOL_SHARE = 0.6
BOOKING_KEYWORD_SHARE = 0.1  # per keyword found
BOOKING_KEYWORD_CAP = 4

CONTACT_PHONE_SHARE = 0.4
CONTACT_ADDRESS_SHARE = 0.3
CONTACT_NAMED_SHARE = 0.3

MATURITY_SHARE = 0.8  # scaled by digital_maturity/100
CONTACT_FORM_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class ScoringWeights:
    """Maximum points of each component; they must add up to 100 so the score is 0-100."""

    email_quality: int = 50
    website_presence: int = 15
    booking_intent: int = 10
    contact_info: int = 10
    digital_maturity: int = 15

    def __post_init__(self) -> None:
        values = [getattr(self, f.name) for f in fields(self)]
        if any(v < 0 for v in values) or sum(values) != 100:
            raise ValueError(f"scoring weights must be >= 0 and add up to 100, got {self}")


@dataclass(frozen=True, slots=True)
class TierThresholds:
    """A score >= hot is hot, >= warm is warm, anything lower is cold."""

    hot: int = 70
    warm: int = 40

    def __post_init__(self) -> None:
        if not 0 <= self.warm < self.hot <= 100:
            raise ValueError(f"tier thresholds need 0 <= warm < hot <= 100, got {self}")

    @classmethod
    def from_settings(cls) -> TierThresholds:
        s = get_settings()
        return cls(hot=s.score_hot_threshold, warm=s.score_warm_threshold)


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """The column, or an all-missing one: a source that lacks a field simply earns nothing."""
    if name in df.columns:
        return df[name]
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def _present(s: pd.Series) -> np.ndarray:
    """True where the text value is non-empty after trimming."""
    return s.fillna("").astype(str).str.strip().ne("").to_numpy()


def _true(s: pd.Series) -> np.ndarray:
    # isin treats None/NaN/NA as not-true without the object-dtype downcasting pitfalls.
    return s.isin([True]).to_numpy()


def _number(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").fillna(0).to_numpy(dtype=float)


def _points(share: np.ndarray, max_points: int) -> np.ndarray:
    """Round half up (not numpy's half-to-even) so a hand calculation gives the same points."""
    return np.floor(np.clip(share, 0.0, 1.0) * max_points + 0.5).astype(np.int64)


def component_shares(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each component's share (0..1) of its maximum points, one array per component."""
    email = _column(df, "email")
    has_email = _present(email)
    status = _column(df, "email_status").fillna("unverified").astype(str).str.lower()
    status_share = status.map(EMAIL_STATUS_SHARE).fillna(0.0).to_numpy(dtype=float)
    usable = has_email & (status_share > 0)
    confidence = np.clip(_number(_column(df, "email_confidence")), 0, 100) / 100
    local = email.fillna("").astype(str).str.lower().str.split("@").str[0]
    local = local.str.split("+").str[0].str.rstrip("0123456789")
    personal = ~local.isin(GENERIC_LOCAL_PARTS).to_numpy()
    email_share = np.where(
        usable,
        status_share + EMAIL_CONFIDENCE_SHARE * confidence + EMAIL_PERSONAL_SHARE * personal,
        0.0,
    )

    has_site = _present(_column(df, "website"))
    reachable = _column(df, "website_reachable")
    site_share = np.select(
        [~has_site, _true(reachable), reachable.isin([False]).to_numpy()],
        [0.0, WEBSITE_REACHABLE_SHARE, WEBSITE_UNREACHABLE_SHARE],
        default=WEBSITE_UNCHECKED_SHARE,
    )

    tools = _column(df, "booking_tools")
    has_tool = tools.map(lambda v: bool(v) and not isinstance(v, float)).to_numpy(dtype=bool)
    keywords = np.clip(_number(_column(df, "booking_keyword_count")), 0, BOOKING_KEYWORD_CAP)
    booking_share = BOOKING_TOOL_SHARE * has_tool + BOOKING_KEYWORD_SHARE * keywords

    named = _present(_column(df, "contact_first_name")) | _present(_column(df, "contact_last_name"))
    contact_share = (
        CONTACT_PHONE_SHARE * _present(_column(df, "phone"))
        + CONTACT_ADDRESS_SHARE * _present(_column(df, "address"))
        + CONTACT_NAMED_SHARE * named
    )

    maturity = np.clip(_number(_column(df, "digital_maturity")), 0, 100) / 100
    digital_share = MATURITY_SHARE * maturity + CONTACT_FORM_SHARE * _true(
        _column(df, "has_contact_form")
    )

    return {
        "email_quality": email_share,
        "website_presence": site_share,
        "booking_intent": booking_share,
        "contact_info": contact_share,
        "digital_maturity": digital_share,
    }


def assign_tiers(scores: np.ndarray | pd.Series, thresholds: TierThresholds) -> np.ndarray:
    """hot / warm / cold for each score."""
    values = np.asarray(scores)
    return np.select(
        [values >= thresholds.hot, values >= thresholds.warm], ["hot", "warm"], default="cold"
    )


def score_leads(
    df: pd.DataFrame,
    weights: ScoringWeights | None = None,
    thresholds: TierThresholds | None = None,
) -> pd.DataFrame:
    """A copy of the batch with `quality_score` (0-100), `tier` and `score_breakdown` added.

    Every rule is a column operation over the whole batch; only the per-row breakdown dicts
    are built at the end."""
    weights = weights or ScoringWeights()
    thresholds = thresholds or TierThresholds.from_settings()
    shares = component_shares(df)
    points = {name: _points(shares[name], getattr(weights, name)) for name in COMPONENTS}
    total = np.clip(sum(points.values()), 0, 100).astype(np.int64)

    out = df.copy()
    out["quality_score"] = total
    out["tier"] = assign_tiers(total, thresholds)
    breakdown = pd.DataFrame(points, index=df.index)
    out["score_breakdown"] = breakdown.to_dict("records") if len(df) else []
    return out
