"""Process-wide environment defaults applied before Prefect or Great Expectations are imported:
telemetry off (it only produces lock errors and timeouts here) and a start-up timeout long enough
for Prefect's ephemeral server to migrate its database on a fresh machine."""

from __future__ import annotations

import os

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_LOGGING_LEVEL": "INFO",
    # (leadflow's own loggers reach the run log without PREFECT_LOGGING_EXTRA_LOGGERS, which
    # stays the operator's: leadflow/run_log.py.)
    # Outside a flow run (the CLI's own commands, the benchmarks, a load worker) those loggers'
    # records go to the terminal only, instead of a UserWarning per record from Prefect's API
    # handler once the process has run a flow.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}


def apply_runtime_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
