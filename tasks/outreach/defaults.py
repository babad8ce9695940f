"""The seed's default sequence and its templates (defaults.json), created when missing, and a
convenient `create_campaign` for the demo and tests.

Only what is missing is created: a sequence, step or template variant already in the database
is never overwritten, so edits made there survive every later call."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from leadflow.settings import get_settings
from models import Campaign, Sequence, SequenceStep, Template
from models.db import take_write_lock
from tasks.outreach.templates import validate_template

DEFAULTS_PATH = Path(__file__).with_name("defaults.json")
DEFAULT_SEQUENCE = "default"
# pg_advisory_xact_lock key: two runs creating the defaults at once cannot both add them.
DEFAULTS_LOCK_KEY = 0x1EAD5E9


def _joined(value: str | list[str] | None) -> str | None:
    return "\n".join(value) if isinstance(value, list) else value


@lru_cache(maxsize=1)
def default_sequences() -> list[dict[str, Any]]:
    """The sequences of defaults.json, bodies joined; raises ValueError for a broken one."""
    sequences = json.loads(DEFAULTS_PATH.read_text())["sequences"]
    for seq in sequences:
        for step in seq["steps"]:
            for t in step["templates"]:
                t["body_text"] = _joined(t["body_text"])
                t["body_html"] = _joined(t.get("body_html"))
                problems = validate_template(t["subject"], t["body_text"], t["body_html"])
                if problems:
                    raise ValueError(f"defaults.json, {seq['name']} step {step['step_number']} "
                                     f"({t['scenario']}): {'; '.join(problems)}")
    return sequences


def ensure_sequence(session: Session, spec: dict[str, Any]) -> int:
    """Create the sequence, steps and template variants of `spec` that are missing."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": DEFAULTS_LOCK_KEY})
    else:
        # SQLite's reads below would run before its write lock: another creator committing
        # meanwhile would not be seen, and its rows added again (the unique names refuse).
        take_write_lock(session)
    sequence = session.scalar(select(Sequence).where(Sequence.name == spec["name"]))
    if sequence is None:
        sequence = Sequence(name=spec["name"], description=spec.get("description"))
        session.add(sequence)
        session.flush()
    steps = {s.step_number: s for s in session.scalars(
        select(SequenceStep).where(SequenceStep.sequence_id == sequence.id))}
    for step_spec in spec["steps"]:
        step = steps.get(step_spec["step_number"])
        if step is None:
            step = SequenceStep(sequence_id=sequence.id, step_number=step_spec["step_number"],
                                name=step_spec["name"], delay_days=step_spec["delay_days"],
                                lead_status=step_spec["lead_status"])
            session.add(step)
            session.flush()
        have = set(session.scalars(select(Template.scenario).where(Template.step_id == step.id)))
        for t in step_spec["templates"]:
            if t["scenario"] not in have:
                session.add(Template(step_id=step.id, scenario=t["scenario"],
                                     subject=t["subject"], body_text=t["body_text"],
                                     body_html=t["body_html"]))
    session.flush()
    return sequence.id


def ensure_default_sequence(session: Session) -> int:
    """Id of the "default" sequence (initial email, follow-up 1 after 3 days, follow-up 2
    after 5 more), created with its templates if missing. Idempotent."""
    spec = next(s for s in default_sequences() if s["name"] == DEFAULT_SEQUENCE)
    return ensure_sequence(session, spec)


def create_campaign(session: Session, **fields: Any) -> int:
    """A campaign with sensible defaults (the default sequence, the sender from settings);
    any column of `campaigns` can be given. Returns its id."""
    unknown = set(fields) - set(Campaign.__table__.columns.keys())
    if unknown:
        raise TypeError(f"create_campaign: unknown fields {sorted(unknown)}")
    settings = get_settings()
    values: dict[str, Any] = {
        "name": "Outreach campaign",
        "sender_name": settings.sender_name,
        "sender_email": settings.sender_email,
        "sender_postal_address": settings.sender_postal_address,
        **fields,
    }
    if values.get("sequence_id") is None:
        values["sequence_id"] = ensure_default_sequence(session)
    campaign = Campaign(**values)
    session.add(campaign)
    session.flush()
    return campaign.id
