"""How a process runs the tasks: collector thresholds and the load worker process."""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from models import Lead, LeadSourceRecord
from models.db import session_scope
from tasks import runtime
from tasks.load import Seen

ROOT = Path(__file__).resolve().parents[2]


def test_relax_gc_raises_the_thresholds_and_never_lowers_them() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        runtime.relax_gc()
        assert gc.get_threshold() == runtime.GC_THRESHOLDS
        gc.set_threshold(50_000, 50, 50)
        runtime.relax_gc()
        assert gc.get_threshold() == (50_000, 50, 50)
    finally:
        gc.set_threshold(*before)


def test_a_load_on_postgresql_runs_in_the_worker_and_commits(pg_clean: str) -> None:
    from tasks.steps import load_chunk_body

    rows = pd.DataFrame([
        {"source": "apollo", "source_record_id": f"w{i}", "company_name": f"Shop {i}",
         "quality_score": 50, "tier": "warm", "cluster_id": i, "existing_lead_id": pd.NA,
         "raw": {"id": f"w{i}"}}
        for i in range(3)
    ])
    outcome = load_chunk_body(pg_clean, None, rows, [], seen=Seen(0, 0))
    assert (outcome["inserted"], outcome["merged"], outcome["rows"]) == (3, 0, 3)
    assert runtime._worker is not None  # the worker process did it
    again = load_chunk_body(pg_clean, None, rows, [], seen=Seen(0, 0))  # a retry
    assert (again["inserted"], again["merged"]) == (0, 3)
    with session_scope(pg_clean) as s:
        assert s.scalar(select(func.count()).select_from(Lead)) == 3
        assert s.scalar(select(func.count()).select_from(LeadSourceRecord)) == 3


def warn_and_answer(answer: int) -> int:
    """Runs in the worker process (imported there by name)."""
    logging.getLogger("tasks.dedupe").warning("%d rows match several existing leads", 2)
    logging.getLogger("tasks.load").info("loaded in the worker")
    logging.getLogger("elsewhere").warning("not the project's")
    return answer


def test_what_the_worker_logs_is_logged_again_in_the_calling_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        assert runtime.run_in_worker(warn_and_answer, 42) == 42
    got = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("tasks.dedupe", logging.WARNING, "2 rows match several existing leads") in got
    assert ("tasks.load", logging.INFO, "loaded in the worker") in got
    assert not [r for r in got if r[0] == "elsewhere"]


LOAD_WORKER_PARENT = """
import os, time
from tasks import runtime

if __name__ == "__main__":
    print(runtime.run_in_worker(os.getpid), flush=True)
    time.sleep(120)
"""
PARSE_POOL_PARENT = """
import os, time
from tasks.website.analyse import parse_pool

if __name__ == "__main__":
    pool = parse_pool(2)
    print(",".join(str(pool.submit(os.getpid).result()) for _ in range(4)), flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("parent_code", [LOAD_WORKER_PARENT, PARSE_POOL_PARENT],
                         ids=["load-worker", "parse-pool"])
def test_pool_workers_exit_when_the_process_that_started_them_is_killed(
    tmp_path: Path, parent_code: str,
) -> None:
    """A flow run's process killed outright (a cancellation past its grace period, the OOM
    killer; Prefect also ends a cancelled run by SIGTERM without Python's exit handlers) must
    not leave its pools' workers behind, idle for ever (the load worker with its database
    connections)."""
    script = tmp_path / "parent.py"
    script.write_text(parent_code)
    parent = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
    assert parent.stdout is not None
    workers = {int(pid) for pid in parent.stdout.readline().split(",")}
    try:
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)], "a worker outlived its parent"
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead (its parent, init here, has not reaped it yet).
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
