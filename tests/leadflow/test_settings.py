"""Settings that are wrong together, or out of range, are refused when loaded, with a message
naming the variable and never the value; every leadflow command says so and exits 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from leadflow.settings import Settings, settings_errors
from tests.conftest import ROOT


def errors(**values: object) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    return settings_errors(caught.value)


def test_tier_thresholds_must_be_ordered_within_0_and_100() -> None:
    for hot, warm in ((30, 60), (50, 50), (150, 40), (70, -1)):
        assert errors(score_hot_threshold=hot, score_warm_threshold=warm) == [
            "the tier thresholds need 0 <= LEADFLOW_SCORE_WARM_THRESHOLD < "
            "LEADFLOW_SCORE_HOT_THRESHOLD <= 100"]
    Settings(score_hot_threshold=100, score_warm_threshold=0)


def test_fallback_order_may_name_only_known_sources() -> None:
    assert errors(source_fallback_order=["apolo", "pdl"]) == [
        "LEADFLOW_SOURCE_FALLBACK_ORDER names unknown sources ['apolo'] "
        "(known: apollo, google_places, pdl)"]
    assert Settings(source_fallback_order=["pdl"]).source_fallback_order == ["pdl"]


def test_out_of_range_knobs_are_named_without_their_value() -> None:
    assert errors(batch_size=0, dedupe_name_threshold=101) == [
        "LEADFLOW_BATCH_SIZE: Input should be greater than or equal to 1",
        "LEADFLOW_DEDUPE_NAME_THRESHOLD: Input should be less than or equal to 100"]
    secret = "sk-not-a-number-9f3a"
    lines = errors(smtp_passwords={"main": {"nested": secret}})
    assert lines and all(line.startswith("LEADFLOW_SMTP_PASSWORDS") for line in lines)
    assert secret not in "".join(lines)


def test_every_command_refuses_invalid_settings_with_exit_2() -> None:
    env = {**os.environ, "LEADFLOW_SCORE_HOT_THRESHOLD": "30",
           "LEADFLOW_SCORE_WARM_THRESHOLD": "60"}
    for command in (["doctor"], ["generate", "--max-results", "5"]):
        done = subprocess.run([sys.executable, "-m", "leadflow.cli", *command], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, command
        assert "invalid settings:" in done.stderr and "THRESHOLD" in done.stderr
        assert "Traceback" not in done.stderr


def test_schedule_timezone_must_be_one_prefect_accepts() -> None:
    for zone in ("Mars/Olympus", "", "EST5EDT6"):
        assert errors(schedule_timezone=zone) == [
            "LEADFLOW_SCHEDULE_TIMEZONE: not an IANA time zone name (e.g. UTC, America/New_York)"]
    assert Settings(schedule_timezone="America/Chicago").schedule_timezone == "America/Chicago"


def test_deployments_refuse_an_unknown_schedule_timezone() -> None:
    env = {**os.environ, "LEADFLOW_SCHEDULE_TIMEZONE": "Mars/Olympus"}
    done = subprocess.run([sys.executable, "-m", "leadflow.cli", "deployments"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "LEADFLOW_SCHEDULE_TIMEZONE: not an IANA time zone name" in done.stderr
    assert "Traceback" not in done.stderr and "Mars/Olympus" not in done.stdout


def test_printed_settings_show_no_secret() -> None:
    """repr and str of the settings (a log line, a traceback with locals) mask the database
    URL's password as they mask the SecretStr keys."""
    settings = Settings(
        database_url="postgresql+psycopg://leadflow:db-pass-7c1e@db.internal:5432/leadflow",
        apollo_api_key="apollo-key-51d0", smtp_passwords={"main": "smtp-pass-a2f4"},
        tracking_secret="tracking-secret-0b9e5d7a",
    )
    for shown in (repr(settings), str(settings)):
        for secret in ("db-pass-7c1e", "apollo-key-51d0", "smtp-pass-a2f4",
                       "tracking-secret-0b9e5d7a"):
            assert secret not in shown
        assert "postgresql+psycopg://leadflow:***@db.internal:5432/leadflow" in shown
    # A value that is not a URL at all may be a secret too.
    assert "not-a-url-secret" not in repr(Settings(database_url="not-a-url-secret"))
