"""`leadflow doctor` against real things: SQLite files, PostgreSQL on a closed port, an SMTP
server (aiosmtpd) and a closed SMTP port on loopback; and the command's exit code."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from aiosmtpd.controller import Controller
from pydantic import SecretStr

from leadflow.doctor import Check, run_checks
from leadflow.settings import Settings
from models.db import upgrade_database
from tests.conftest import free_port
from tests.leadflow.conftest import SECRET


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def everything_said(checks: list[Check]) -> str:
    return " ".join(f"{c.name} {c.detail} {c.fix}" for c in checks)


def test_healthy_sqlite_setup_passes_every_check(
    sqlite_url: str, make_settings: Callable[..., Settings]
) -> None:
    checks = run_checks(make_settings(database_url=sqlite_url))
    assert [c for c in checks if not c.ok] == []
    got = by_name(checks)
    assert "(head)" in got["database migrated"].detail
    assert "sandbox at http://127.0.0.1:8799/apollo/api/v1" in got["apollo API"].detail
    assert "LEADFLOW_APOLLO_API_KEY" in got["apollo API"].detail
    assert "outbox" in got["SMTP providers"].detail
    assert "sandbox-apollo-key" not in everything_said(checks)


def test_missing_sqlite_file_says_migrate_and_creates_nothing(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    path = tmp_path / "never.db"
    got = by_name(run_checks(make_settings(database_url=f"sqlite:///{path}")))
    assert got["database migrated"].failed
    assert "leadflow migrate" in got["database migrated"].fix
    assert not path.exists()


def test_unmigrated_database_fails_with_the_migrate_command(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    got = by_name(run_checks(make_settings(database_url=f"sqlite:///{path}")))
    assert got["database reachable"].ok
    assert got["database migrated"].failed
    assert got["database migrated"].detail == "no schema (the database is empty)"
    assert got["database migrated"].fix == "run `leadflow migrate`"
    assert not got["SMTP providers"].ok  # cannot be read without the schema


def test_database_behind_head_names_both_revisions(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade_database(url, "0002")
    migrated = by_name(run_checks(make_settings(database_url=url)))["database migrated"]
    assert migrated.failed
    assert migrated.detail.startswith("at revision 0002, head is ")
    assert migrated.fix == "run `leadflow migrate`"


def test_unreachable_database_fails_without_showing_its_password(
    make_settings: Callable[..., Settings]
) -> None:
    url = f"postgresql+psycopg://leadflow:{SECRET}@127.0.0.1:{free_port()}/leadflow"
    checks = run_checks(make_settings(database_url=url))
    got = by_name(checks)
    assert got["database reachable"].failed
    assert "127.0.0.1" in got["database reachable"].detail
    assert "LEADFLOW_DATABASE_URL" in got["database reachable"].fix
    assert got["database migrated"].failed
    assert SECRET not in everything_said(checks)


def test_unusable_database_url_is_said_plainly_without_its_password(
    make_settings: Callable[..., Settings]
) -> None:
    """A port that is no number, a driver that is not installed: a failed check naming the
    setting, as `leadflow migrate` says it, not a traceback."""
    for url in (f"postgresql+psycopg://leadflow:{SECRET}@127.0.0.1:port/leadflow",
                f"mysql://leadflow:{SECRET}@127.0.0.1/leadflow"):
        checks = run_checks(make_settings(database_url=url))
        got = by_name(checks)
        assert got["database reachable"].failed, url
        assert "LEADFLOW_DATABASE_URL" in got["database reachable"].detail
        assert SECRET not in everything_said(checks)


def test_unreachable_smtp_provider_fails(
    sqlite_url: str, make_settings: Callable[..., Settings], add_provider: Callable[..., None]
) -> None:
    port = free_port()  # nothing listens there
    add_provider(sqlite_url, "closed", "127.0.0.1", port, security="none")
    check = by_name(run_checks(make_settings(database_url=sqlite_url)))["SMTP closed"]
    assert check.failed
    assert f"127.0.0.1:{port} (none) unreachable" in check.detail
    assert "'closed'" in check.fix


def test_reachable_smtp_provider_passes_without_logging_in(
    sqlite_url: str, make_settings: Callable[..., Settings], add_provider: Callable[..., None],
    smtp_server: Controller,
) -> None:
    add_provider(sqlite_url, "local", "127.0.0.1", smtp_server.port, security="none")
    settings = make_settings(database_url=sqlite_url,
                             tracking_base_url="https://t.leadflow.example")
    checks = run_checks(settings)
    assert [c for c in checks if not c.ok] == []
    detail = by_name(checks)["SMTP local"].detail
    assert detail == (f"127.0.0.1:{smtp_server.port} (none) answers EHLO; no login; "
                      "login not tried")


def test_starttls_provider_whose_server_offers_no_starttls_fails(
    sqlite_url: str, make_settings: Callable[..., Settings], add_provider: Callable[..., None],
    smtp_server: Controller,
) -> None:
    add_provider(sqlite_url, "plain", "127.0.0.1", smtp_server.port, security="starttls",
                 username="sam", password_ref="plain")
    settings = make_settings(database_url=sqlite_url,
                             smtp_passwords={"plain": SecretStr(SECRET)})
    checks = run_checks(settings)
    check = by_name(checks)["SMTP plain"]
    assert check.failed
    assert "does not offer STARTTLS" in check.detail
    assert SECRET not in everything_said(checks)


def test_loopback_tracking_url_warns_once_a_provider_sends(
    sqlite_url: str, make_settings: Callable[..., Settings], add_provider: Callable[..., None],
    smtp_server: Controller,
) -> None:
    add_provider(sqlite_url, "local", "127.0.0.1", smtp_server.port, security="none")
    check = by_name(run_checks(make_settings(database_url=sqlite_url)))["tracking base URL"]
    assert not check.ok and check.severity == "warning" and not check.failed
    assert "LEADFLOW_TRACKING_BASE_URL" in check.fix


def test_missing_keys_warn_per_api_and_fail_when_no_lead_source_is_left(
    sqlite_url: str, make_settings: Callable[..., Settings]
) -> None:
    no_keys = {f"{s}_api_key": None for s in ("apollo", "google_places", "pdl", "hunter")}
    got = by_name(run_checks(make_settings(database_url=sqlite_url, **no_keys,
                                           pdl_secret_block="pdl-key")))
    assert got["apollo API"].severity == "warning" and not got["apollo API"].ok
    assert "LEADFLOW_APOLLO_API_KEY" in got["apollo API"].fix
    assert got["pdl API"].ok and "Prefect Secret block 'pdl-key'" in got["pdl API"].detail
    assert got["lead sources"].ok and got["lead sources"].detail == "usable, in order: pdl"

    got = by_name(run_checks(make_settings(database_url=sqlite_url, **no_keys)))
    assert got["lead sources"].failed


def test_tracking_secret_is_ok_from_the_generated_file_and_warns_without_one(
    sqlite_url: str, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    key_file = tmp_path / "tracking.key"
    settings = make_settings(database_url=sqlite_url, tracking_secret=None,
                             tracking_secret_file=key_file)
    check = by_name(run_checks(settings))["tracking secret"]
    assert check.severity == "warning" and not check.ok
    assert not key_file.exists()  # the doctor never generates it
    key_file.write_text("k" * 43)
    assert by_name(run_checks(settings))["tracking secret"].ok


def test_batches_left_running_by_a_dead_run_warn_with_the_command_that_closes_them(
    sqlite_url: str, make_settings: Callable[..., Settings]
) -> None:
    from datetime import UTC, datetime, timedelta

    from models import LeadBatch
    from models.db import session_scope

    now = datetime.now(UTC)
    with session_scope(sqlite_url) as session:
        for key, silent_h in (("dead", 3.0), ("alive", 0.1)):
            session.add(LeadBatch(run_key=key, kind="import_csv", source="csv",
                                  status="running", started_at=now - timedelta(hours=9),
                                  heartbeat_at=now - timedelta(hours=silent_h)))

    check = by_name(run_checks(make_settings(database_url=sqlite_url)))["lead batches"]

    assert (check.ok, check.severity) == (False, "warning")
    assert check.detail.startswith("1 batch(es) still running with no sign of life")
    assert "LEADFLOW_BATCH_STALE_AFTER_S=7200 s: 1 (import_csv, last seen " in check.detail
    assert "leadflow sweep-batches" in check.fix
    with session_scope(sqlite_url) as session:  # the doctor only reads
        assert [b.status for b in session.query(LeadBatch)] == ["running", "running"]


def _doctor_cli(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    clean.update(COLUMNS="250", LEADFLOW_TRACKING_SECRET_FILE=str(tmp_path / "tracking.key"),
                 **env)
    return subprocess.run([sys.executable, "-m", "leadflow.cli", "doctor"], cwd=tmp_path,
                          env=clean, capture_output=True, text=True, timeout=120)


def test_cli_exits_1_on_a_failed_check_and_0_when_only_warnings_remain(
    tmp_path: Path, sqlite_url: str
) -> None:
    down = _doctor_cli(
        tmp_path, LEADFLOW_DATABASE_URL=f"postgresql+psycopg://u:{SECRET}@127.0.0.1:"
                                        f"{free_port()}/x",
        LEADFLOW_APOLLO_API_KEY=SECRET,
    )
    assert down.returncode == 1
    assert "FAIL" in down.stdout and "database reachable" in down.stdout
    assert SECRET not in down.stdout + down.stderr

    healthy = _doctor_cli(tmp_path, LEADFLOW_DATABASE_URL=sqlite_url,
                          LEADFLOW_APOLLO_API_KEY=SECRET)
    assert healthy.returncode == 0, healthy.stdout
    assert "warn" in healthy.stdout  # no hunter/openai key, no tracking key file yet
    assert SECRET not in healthy.stdout + healthy.stderr
