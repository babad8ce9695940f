"""What leadflow's own modules log reaches the run's log in the Prefect UI when a deployment runs
on a process worker started the documented way (`prefect worker start`, in a shell that never
imported leadflow, so without leadflow's process defaults)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deployments.local_cluster import LocalCluster
from models.db import session_scope


def test_leadflow_warnings_reach_the_run_log_of_a_worker_run(
    tmp_path: Path, pg_clean: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.outreach.defaults import create_campaign

    # A worker machine's shell: what docs/deployment.md tells the operator to export, and the
    # operator's own extra loggers (which the deployments must not replace).
    monkeypatch.delenv("PREFECT_LOGGING_LEVEL", raising=False)
    monkeypatch.setenv("PREFECT_LOGGING_EXTRA_LOGGERS", "operator.audit")
    with session_scope(pg_clean) as session:
        campaign_id = create_campaign(session, name="bad zone", status="active",
                                      timezone="Mars/Olympus_Mons")
    cluster = LocalCluster(home=tmp_path / "prefect", env={"LEADFLOW_DATABASE_URL": pg_clean})
    try:
        cluster.start_server()
        cluster.deploy_all()
        cluster.start_workers(1)
        run_id = cluster.trigger("daily-outreach/daily-outreach")
        assert cluster.wait([run_id], timeout=300) == {run_id: "COMPLETED"}, cluster.logs()
        wanted = f"campaign {campaign_id}: unknown time zone 'Mars/Olympus_Mons', skipped"
        deadline = time.monotonic() + 30
        while wanted not in (messages := cluster.run_logs(run_id)):
            assert time.monotonic() < deadline, messages
            time.sleep(1)
    finally:
        cluster.stop()
