"""leadflow's own loggers reach the flow run's log next to the loggers an operator names in
PREFECT_LOGGING_EXTRA_LOGGERS (leadflow/run_log.py), checked in a fresh interpreter: Prefect
sets up logging before leadflow is imported (a worker's flow-run process) or after (the CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What reaches the run log is what Prefect's extra-logger handler (the API handler of
# `prefect.extra`, which Prefect copies onto every logger the setting names) is handed: the
# script counts the records it gets, by logger name, instead of sending them to a server.
SCRIPT = """
import json, logging, sys

def prefect_first():
    from prefect import flow  # sets up Prefect's logging
    import flows.daily_outreach  # a deployment's entrypoint: imports leadflow

def leadflow_first():
    import leadflow
    from prefect import flow
    import flows.daily_outreach

{order}()
seen = []
for handler in logging.getLogger("prefect.extra").handlers:
    handler.emit = lambda record: seen.append(record.name)
names = ["operator.audit", "tasks.outreach.queue", "clients.http", "leadflow.tracking",
         "models.db", "tracking_app.events", "unrelated.library"]
for name in names:
    logging.getLogger(name).warning("from %s", name)
print(json.dumps(seen))
"""


@pytest.mark.parametrize("order", ["prefect_first", "leadflow_first"])
@pytest.mark.parametrize("operators", ["operator.audit", "operator.audit,tasks",
                                       "operator.audit,tasks.outreach"])
def test_leadflow_loggers_reach_the_run_log_and_the_operators_too(
    order: str, operators: str,
) -> None:
    env = {**os.environ, "PREFECT_LOGGING_EXTRA_LOGGERS": operators}
    done = subprocess.run([sys.executable, "-c", SCRIPT.replace("{order}", order)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # Each once: naming `tasks`, or a logger below it, too does not send its records twice.
    assert sorted(seen) == sorted(["operator.audit", "tasks.outreach.queue", "clients.http",
                                   "leadflow.tracking", "models.db", "tracking_app.events"])


LAST_RESORT = """
import logging
import leadflow  # no Prefect in this process: nothing configures logging
logging.getLogger("clients.http").warning("still printed")
"""


def test_without_prefect_a_leadflow_warning_is_still_printed() -> None:
    done = subprocess.run([sys.executable, "-c", LAST_RESORT], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "still printed" in done.stderr
