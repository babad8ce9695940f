"""The import-csv flow end to end on PostgreSQL, against a temporary Prefect server: real
fixture files in, leads, quarantined rows and the batch record out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from flows.import_csv import import_csv
from models import Lead, LeadBatch, QuarantinedRow
from models.db import session_scope
from tasks.csv_import import CsvFormatError
from tasks.validation import looks_like_formula

CSV = Path(__file__).resolve().parent.parent / "fixtures" / "csv"

pytestmark = pytest.mark.usefixtures("prefect_server", "pg_settings")


def data_lines(path: Path) -> int:
    """Lines after the header, empty ones included (every one must be accounted for)."""
    return len(path.read_bytes().splitlines()) - 1


def lead_names() -> list[str]:
    with session_scope() as session:
        return sorted(session.scalars(select(Lead.company_name)))


def quarantined(batch_id: int) -> list[tuple[str, str, str | None]]:
    with session_scope() as session:
        rows = session.execute(
            select(QuarantinedRow.stage, QuarantinedRow.rule, QuarantinedRow.row_ref)
            .where(QuarantinedRow.batch_id == batch_id).order_by(QuarantinedRow.row_ref)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def leads_loaded() -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Lead)) or 0)


def batch(batch_id: int) -> LeadBatch:
    with session_scope() as session:
        found = session.get_one(LeadBatch, batch_id)
        session.expunge(found)
        return found


def accounted(summary: dict[str, Any]) -> int:
    return (summary["leads_generated"] + summary["leads_merged"] + summary["rows_rejected"]
            + summary["csv"]["empty_lines"])


def test_sales_navigator_export_loads_good_rows_and_quarantines_bad_ones_with_their_rule() -> None:
    path = CSV / "sales_navigator_leads.csv"

    summary = import_csv(str(path))

    assert lead_names() == ["Lumen Hair Studio", "Northgate Physio", "Stillwater Yoga"]
    assert quarantined(summary["batch_id"]) == [
        ("csv", "invalid_email", "line 5"),
        ("csv", "formula_injection", "line 6"),
    ]
    assert summary["csv"]["format"] == "linkedin_sales_navigator_leads"
    assert summary["sources_used"] == ["csv_linkedin"]
    assert (summary["leads_generated"], summary["leads_merged"], summary["rows_rejected"]) == (
        3, 0, 2)
    assert accounted(summary) == data_lines(path) == 5
    record = batch(summary["batch_id"])
    assert (record.kind, record.status, record.leads_generated) == ("import_csv", "done", 3)
    with session_scope() as session:
        lumen = session.scalars(select(Lead).where(Lead.company_name == "Lumen Hair Studio")).one()
        assert (lumen.source, lumen.email, lumen.city) == (
            "csv_linkedin", "maren@lumenhair.example", "Austin")
        assert lumen.contact_name == "Maren Okafor"
        assert lumen.tier in {"hot", "warm", "cold"}


def test_generic_companies_file_loads_every_row_in_small_chunks() -> None:
    path = CSV / "generic_companies.csv"

    summary = import_csv(str(path), chunk_rows=2)

    assert lead_names() == ["Cedar Chiropractic", "Golden Mane Salon", "Sunrise Massage"]
    assert summary["csv"]["format"] == "generic_companies"
    assert summary["csv"]["rows_read"] == 3
    assert summary["rows_rejected"] == 0
    assert accounted(summary) == data_lines(path)
    with session_scope() as session:
        golden = session.scalars(select(Lead).where(Lead.company_name == "Golden Mane Salon")).one()
        assert (golden.website, golden.source) == ("https://goldenmane.example", "csv")


@pytest.mark.parametrize("chunk_rows", [1, 5000])
def test_repeated_rows_are_merged_not_rejected_whatever_the_chunk_size(chunk_rows: int) -> None:
    path = CSV / "repeated_rows.csv"

    summary = import_csv(str(path), chunk_rows=chunk_rows)

    assert lead_names() == ["Dup Salon", "Other Spa"]
    assert (summary["leads_generated"], summary["leads_merged"], summary["rows_rejected"]) == (
        2, 2, 0)
    assert accounted(summary) == data_lines(path)


def test_empty_lines_are_counted_and_every_line_accounted_for() -> None:
    path = CSV / "empty_lines.csv"

    summary = import_csv(str(path))

    assert lead_names() == ["Alpha Nails", "Beta Brows"]
    assert summary["csv"]["empty_lines"] == 5
    assert accounted(summary) == data_lines(path) == 7


def test_reimporting_the_same_file_creates_no_new_lead() -> None:
    path = CSV / "sales_navigator_leads.csv"
    first = import_csv(str(path))
    with session_scope() as session:
        leads_before = session.scalar(select(func.count()).select_from(Lead))

    second = import_csv(str(path))

    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == leads_before == 3
    assert second["batch_id"] != first["batch_id"]
    assert (second["leads_generated"], second["leads_merged"]) == (0, 3)
    assert accounted(second) == data_lines(path)


def test_missing_required_column_raises_a_clear_error_and_marks_the_batch_failed() -> None:
    path = CSV / "missing_required_column.csv"

    with pytest.raises(CsvFormatError, match="no usable header") as raised:
        import_csv(str(path))

    message = str(raised.value)
    assert "'Phone', 'City', 'Notes'" in message and "company name column" in message
    with session_scope() as session:
        batches = session.scalars(select(LeadBatch)).all()
        assert [(b.kind, b.status) for b in batches] == [("import_csv", "failed")]
        assert "no usable header" in batches[0].notes[0]
        assert batches[0].finished_at is not None
    assert lead_names() == []


def test_a_failed_import_leaves_no_stage_timing_behind() -> None:
    """A run's stage intervals are kept per batch until its summary reports them: a failed
    run never reports, and a long-lived process (a worker, `leadflow serve`) must not keep
    them."""
    from tasks.steps import STAGE_INTERVALS

    with pytest.raises(CsvFormatError):
        import_csv(str(CSV / "missing_required_column.csv"))

    with session_scope() as session:
        failed = session.scalars(select(LeadBatch.id)).one()
    assert failed not in STAGE_INTERVALS


def test_formula_injection_cells_never_reach_the_leads_table() -> None:
    path = CSV / "formula_injection.csv"

    summary = import_csv(str(path))

    names = lead_names()
    assert names == ["+Plus Fitness", "@Home Salon", "Handle Salon", "Negative Notes",
                     "Safe Phone Co"]
    with session_scope() as session:
        for lead in session.scalars(select(Lead)):
            for value in (lead.company_name, lead.phone, lead.contact_name):
                assert not looks_like_formula(value or "")
                assert not (value or "").lstrip().startswith(("=", "+cmd", "-2+", "@SUM"))
    rules = {rule for _, rule, _ in quarantined(summary["batch_id"])}
    assert rules == {"formula_injection"}
    assert summary["rows_rejected"] == 5
    assert accounted(summary) == data_lines(path)


def test_lines_swallowed_by_a_quote_left_open_are_kept_in_the_quarantine(tmp_path: Path) -> None:
    path = tmp_path / "open_quote.csv"
    notes = "n" * 1000
    lines = ["company,notes,city", f'Open Quote Salon,"{notes},Austin']
    lines += [f"Salon {i},{notes},Austin" for i in range(150)]
    path.write_text("\n".join(lines) + "\n")

    summary = import_csv(str(path))

    with session_scope() as session:
        payload = session.scalars(select(QuarantinedRow.payload).where(
            QuarantinedRow.batch_id == summary["batch_id"])).one()
    names = set(lead_names())
    for text in lines[1:]:
        name = text.split(",")[0]
        assert name in names or f"{text}\n" in payload["_text"], name


def start_big_import(tmp_path: Path, pg_settings: str,
                     prefect_server: str) -> tuple[subprocess.Popen[bytes], Path]:
    """An import of a 60,000-row file in its own process (long enough to be signalled mid-file
    on a busy machine), returned once its first chunk has loaded (or it ended, or 180 s),
    with the file its output goes to."""
    path = tmp_path / "big.csv"
    rows = [f"Salon {i},https://salon-{i}.example,512-555-{i:04d},Austin,TX,Salon"
            for i in range(60_000)]
    path.write_text("company,website,phone,city,state,industry\n" + "\n".join(rows) + "\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "LEADFLOW_DATABASE_URL": pg_settings,
           "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(root)}
    # SIGUSR1 prints every thread's stack to the log: what a run that does not end waits on.
    code = ("import faulthandler, signal, sys; "
            "faulthandler.register(signal.SIGUSR1, all_threads=True); "
            "from flows.import_csv import import_csv; import_csv(sys.argv[1], chunk_rows=200)")
    log = tmp_path / "import.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=root, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while not leads_loaded() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return proc, log


def wait_or_dump(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait for the import's process to end; if it does not, fail with every thread's stack
    (faulthandler, on SIGUSR1) and the end of its output: what it was stuck on."""
    import signal

    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        proc.wait()
        pytest.fail(f"the import did not end within {timeout:g} s:\n"
                    + log.read_text(errors="replace")[-12000:])


def assert_closed_as_cancelled(log: Path) -> None:
    """The signalled import's batch ended `failed`, saying it was stopped by SIGTERM, with
    what the chunks before the signal loaded; and its run's page shows it."""
    from prefect.artifacts import Artifact

    output = log.read_text(errors="replace")
    with session_scope() as session:
        batches = session.scalars(select(LeadBatch)).all()
        assert [(b.kind, b.status) for b in batches] == [("import_csv", "failed")], output[-3000:]
        assert batches[0].finished_at is not None
        assert batches[0].notes == [
            "import failed: stopped by SIGTERM (the run was cancelled or its process ended)"]
        assert batches[0].leads_generated == leads_loaded() > 0
    artifact = Artifact.get("csv-import-summary")
    assert artifact is not None and artifact.description is not None
    assert artifact.description.startswith(f"CSV import, batch {batches[0].id} (failed)")


def test_an_import_cancelled_mid_file_closes_its_batch_as_failed(
    tmp_path: Path, pg_settings: str, prefect_server: str,
) -> None:
    """Prefect cancels a run with SIGTERM, which its engine raises in the flow as
    TerminationSignal (a BaseException, as is Ctrl-C's KeyboardInterrupt): the process is
    really signalled here, mid-file, and the batch must end `failed`, never stay `running`."""
    import signal

    proc, log = start_big_import(tmp_path, pg_settings, prefect_server)
    try:
        assert proc.poll() is None, "the import ended before it could be cancelled"
        proc.send_signal(signal.SIGTERM)
        wait_or_dump(proc, log, 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_closed_as_cancelled(log)


def test_the_next_import_marks_failed_a_batch_whose_process_was_killed_not_a_live_one(
    tmp_path: Path, pg_settings: str, prefect_server: str,
) -> None:
    """SIGKILL (as the OOM killer or a reboot) runs no code: the killed import's batch stays
    `running`. The next import marks it failed once its heartbeat (stamped by each chunk
    load) is older than LEADFLOW_BATCH_STALE_AFTER_S; the hours that takes are stood for by
    moving its heartbeat back. A long batch whose heartbeat is fresh is left running."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    proc, log = start_big_import(tmp_path, pg_settings, prefect_server)
    try:
        assert proc.poll() is None, "the import ended before it could be killed"
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with session_scope() as session:
        killed = session.scalars(select(LeadBatch)).one()
        assert killed.status == "running", log.read_text(errors="replace")[-3000:]
        assert killed.heartbeat_at is not None and killed.heartbeat_at > killed.started_at
        session.execute(update(LeadBatch).where(LeadBatch.id == killed.id).values(
            heartbeat_at=killed.heartbeat_at - timedelta(hours=3)))
        now = datetime.now(UTC)
        live = LeadBatch(run_key="live", kind="generate", source="apollo", status="running",
                         started_at=now - timedelta(hours=10), heartbeat_at=now)
        session.add(live)
        session.flush()
        live_id = live.id
    loaded_by_killed = leads_loaded()

    summary = import_csv(str(CSV / "sales_navigator_leads.csv"))

    assert batch(summary["batch_id"]).status == "done"
    assert batch(live_id).status == "running"
    swept = batch(killed.id)
    assert swept.status == "failed"
    assert swept.finished_at is not None
    assert len(swept.notes) == 1 and "no sign of life since" in swept.notes[0]
    assert swept.leads_generated == loaded_by_killed > 0
