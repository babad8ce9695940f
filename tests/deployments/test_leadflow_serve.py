"""`leadflow serve` (the single-machine set-up): one process registers every deployment with a
real Prefect server, with their schedules, and runs what is triggered, on the embedded SQLite
default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from deployments.catalog import JOBS
from deployments.local_cluster import ROOT, LocalCluster


def test_leadflow_serve_registers_every_deployment_and_runs_a_triggered_one(
    tmp_path: Path,
) -> None:
    env = {"LEADFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'leadflow.db'}",
           "LEADFLOW_SCHEDULE_TIMEZONE": "Europe/Paris",
           "LEADFLOW_TRACKING_SECRET": "serve-test-secret-0123456789"}
    server = LocalCluster(home=tmp_path / "prefect", env=env)
    server.start_server()
    serve = subprocess.Popen(
        [sys.executable, "-m", "leadflow.cli", "serve"], cwd=ROOT, env=server.process_env(),
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "serve.log").open("wb"),
        start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(server.deployment_names()) < len(JOBS):
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        assert server.deployment_names() == sorted(job.name for job in JOBS)
        daily = server.deployment("daily-lead-generation", "daily-lead-generation")
        assert daily["schedules"][0]["schedule"] == {
            "cron": "0 9 * * *", "timezone": "Europe/Paris", "day_or": True}
        run_id = server.trigger("refresh-engagement/refresh-engagement")
        states = server.wait([run_id], timeout=180)
        assert states == {run_id: "COMPLETED"}, (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGTERM)
            serve.wait(timeout=30)
        server.stop()


def test_leadflow_deploy_puts_the_settings_time_zone_into_every_schedule(
    tmp_path: Path,
) -> None:
    server = LocalCluster(home=tmp_path / "prefect",
                          env={"LEADFLOW_SCHEDULE_TIMEZONE": "Asia/Tokyo"})
    server.start_server()
    try:
        server.run_prefect("work-pool", "create", "leadflow-process", "--type", "process")
        done = subprocess.run([sys.executable, "-m", "leadflow.cli", "deploy"], cwd=ROOT,
                              env=server.process_env(), capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert server.deployment_names() == sorted(job.name for job in JOBS)
        for job in JOBS:
            if job.cron:
                schedule = server.deployment(job.name, job.name)["schedules"][0]["schedule"]
                assert (schedule["cron"], schedule["timezone"]) == (job.cron, "Asia/Tokyo")
    finally:
        server.stop()


def test_leadflow_deploy_works_from_any_directory(tmp_path: Path) -> None:
    """Run from a directory outside the checkout, without LEADFLOW_PROJECT_DIR: the project is
    found from the package's location, and nothing is written to the current directory."""
    server = LocalCluster(home=tmp_path / "prefect")
    server.start_server()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    try:
        server.run_prefect("work-pool", "create", "leadflow-process", "--type", "process")
        env = {k: v for k, v in server.process_env().items() if k != "LEADFLOW_PROJECT_DIR"}
        done = subprocess.run([sys.executable, "-m", "leadflow.cli", "deploy"], cwd=elsewhere,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert server.deployment_names() == sorted(job.name for job in JOBS)
        assert list(elsewhere.iterdir()) == []
    finally:
        server.stop()
