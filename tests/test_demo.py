"""Smoke run of the README's main job: `leadflow demo` on the embedded defaults (a SQLite file,
the sandbox started by the command itself), in a subprocess like a user would run it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from email.parser import BytesParser
from email.policy import default
from pathlib import Path

from tests.flows.conftest import prefect_server  # noqa: F401  (one Prefect server per session)


def test_demo_runs_the_whole_job_on_sqlite(tmp_path: Path, prefect_server: str) -> None:  # noqa: F811
    db = tmp_path / "leadflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(LEADFLOW_DATABASE_URL=f"sqlite:///{db}", PREFECT_API_URL=prefect_server,
               COLUMNS="200")

    done = subprocess.run(
        [sys.executable, "-m", "leadflow.cli", "demo", "--max-results", "40"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    for label in ("batch id", "leads generated", "merged duplicates", "rejected rows",
                  "average score", "tiers"):
        assert label in done.stdout
    with sqlite3.connect(db) as conn:
        leads = conn.execute("SELECT count(*) FROM leads").fetchone()[0]
        status, generated = conn.execute(
            "SELECT status, leads_generated FROM lead_batches").fetchone()
        analysed = conn.execute("SELECT count(*) FROM website_analyses").fetchone()[0]
    assert leads > 0 and generated == leads and status == "done"
    assert analysed > 0
    # ...then a demo campaign contacts the best of them: step 1 written to the outbox as
    # .eml files (no SMTP server configured), steps 2 and 3 scheduled.
    with sqlite3.connect(db) as conn:
        by_status = dict(conn.execute(
            "SELECT step_number || ':' || status, count(*) FROM emails GROUP BY 1").fetchall())
        ai = dict(conn.execute("SELECT ai_status, count(*) FROM emails WHERE step_number = 1 "
                               "GROUP BY 1").fetchall())
    sent = by_status.get("1:sent", 0)
    assert sent > 0 and by_status == {"1:sent": sent, "2:scheduled": sent, "3:scheduled": sent}
    assert ai == {"used": sent}  # personalised by the sandbox's OpenAI endpoint
    outbox = sorted((tmp_path / ".leadflow" / "outbox").glob("*.eml"))
    assert len(outbox) == sent
    message = BytesParser(policy=default).parse(outbox[0].open("rb"))
    assert message["List-Unsubscribe"] and message.get_body(("html",)) is not None
    assert "emails sent" in done.stdout
