"""The seed's default sequence, created once with valid templates for every scenario, and
create_campaign's defaults."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from models import Campaign, Sequence, SequenceStep, Template
from models.db import session_scope
from tasks.outreach.defaults import create_campaign, default_sequences, ensure_default_sequence
from tasks.outreach.routing import routing_table
from tasks.outreach.templates import validate_template


def test_default_sequence_has_the_seeds_three_steps(pg_clean: str) -> None:
    with session_scope(pg_clean) as session:
        sequence_id = ensure_default_sequence(session)
    with session_scope(pg_clean) as session:
        steps = session.execute(
            select(SequenceStep.step_number, SequenceStep.name, SequenceStep.delay_days,
                   SequenceStep.lead_status)
            .where(SequenceStep.sequence_id == sequence_id).order_by(SequenceStep.step_number)
        ).all()
        assert session.scalar(select(Sequence.name).where(Sequence.id == sequence_id)) == \
            "default"
    assert steps == [(1, "Initial email", 0, "contacted"), (2, "Follow-up 1", 3, "follow_up_1"),
                     (3, "Follow-up 2", 5, "follow_up_2")]


def test_ensure_default_sequence_is_idempotent_and_keeps_edits(pg_clean: str) -> None:
    with session_scope(pg_clean) as session:
        first = ensure_default_sequence(session)
        counts = session.scalar(select(func.count()).select_from(Template))
        session.execute(update(Template).where(Template.scenario.is_(None))
                        .values(subject="Edited {{companyName}}"))
    with session_scope(pg_clean) as session:
        assert ensure_default_sequence(session) == first
        assert session.scalar(select(func.count()).select_from(Template)) == counts
        assert session.scalar(select(func.count()).select_from(Sequence)) == 1
        edited = session.scalars(select(Template.subject).where(Template.scenario.is_(None)))
        assert set(edited) == {"Edited {{companyName}}"}


def test_a_deleted_variant_is_added_back_and_nothing_else(pg_clean: str) -> None:
    with session_scope(pg_clean) as session:
        ensure_default_sequence(session)
        total = session.scalar(select(func.count()).select_from(Template))
        session.execute(Template.__table__.delete().where(Template.scenario == "no_website"))
    with session_scope(pg_clean) as session:
        ensure_default_sequence(session)
        assert session.scalar(select(func.count()).select_from(Template)) == total


def test_every_default_template_is_valid_and_step_one_covers_every_scenario() -> None:
    steps = default_sequences()[0]["steps"]
    for step in steps:
        assert any(t["scenario"] is None for t in step["templates"])
        for t in step["templates"]:
            assert validate_template(t["subject"], t["body_text"], t["body_html"]) == []
            assert t["scenario"] is None or t["scenario"] in routing_table().scenarios
    step_one = {t["scenario"] for t in steps[0]["templates"]}
    assert step_one | {None, "general"} == set(routing_table().scenarios) | {None}
    assert all("{{#personalOpening}}" in t["body_text"] for t in steps[0]["templates"])


def test_create_campaign_uses_the_default_sequence_and_sender_from_settings(
    pg_clean: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.settings import reset_settings_cache

    monkeypatch.setenv("LEADFLOW_SENDER_NAME", "Ana at Example")
    reset_settings_cache()
    try:
        with session_scope(pg_clean) as session:
            campaign_id = create_campaign(session, name="Austin salons", leads_per_day=20)
            other = create_campaign(session, sender_email="x@other.example")
        with session_scope(pg_clean) as session:
            campaign = session.get(Campaign, campaign_id)
            assert campaign is not None
            assert (campaign.name, campaign.leads_per_day, campaign.sender_name) == (
                "Austin salons", 20, "Ana at Example")
            assert campaign.sender_email == "sam@booknex.example"
            assert campaign.sender_postal_address.startswith("Booknex Ltd")
            assert campaign.sequence_id == ensure_default_sequence(session)
            other_campaign = session.get(Campaign, other)
            assert other_campaign is not None and other_campaign.sender_email == "x@other.example"
    finally:
        reset_settings_cache()


def test_create_campaign_refuses_unknown_fields(pg_clean: str) -> None:
    with session_scope(pg_clean) as session, pytest.raises(TypeError, match="sendr_name"):
        create_campaign(session, sendr_name="typo")


def test_on_sqlite_defaults_created_by_another_run_meanwhile_are_found_not_added_again(
    sqlite_url: str,
) -> None:
    """PostgreSQL queues the creators of the defaults on an advisory lock; SQLite's reads ran
    before its write lock, so a second `campaign create` while the first was committing read
    no default sequence and failed on the unique name when it added one."""
    from tests.writers import writer_committing_soon

    created: list[int] = []
    other = writer_committing_soon(sqlite_url,
                                   lambda s: created.append(ensure_default_sequence(s)))
    with other, session_scope(sqlite_url) as session:
        found = ensure_default_sequence(session)
    assert found == created[0]
    with session_scope(sqlite_url) as session:
        assert session.scalar(select(func.count()).select_from(Sequence)) == 1
        assert session.scalar(select(func.count()).select_from(SequenceStep)) == 3
