"""Process-wide defaults (leadflow/runtime.py), checked in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A process that has run a flow, then logs through one of leadflow's loggers outside any flow
# run: what the CLI's own commands, the benchmarks and the load worker do.
SCRIPT = """
import logging
import leadflow  # applies the runtime defaults
from prefect import flow

@flow
def one() -> int:
    return 1

one()
logging.getLogger("clients.http").warning("logged outside a flow run")
print("done")
"""


def test_leadflow_loggers_outside_a_flow_run_raise_no_warning_and_still_log() -> None:
    env = {k: v for k, v in os.environ.items()
           if k != "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"}
    done = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", SCRIPT],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done" in done.stdout
    assert "logged outside a flow run" in done.stdout + done.stderr
    assert "attempted to send logs to the API" not in done.stderr
