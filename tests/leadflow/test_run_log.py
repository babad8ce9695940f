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


# A flow whose source client's first attempt fails (a real HTTP server answering 503, then 200):
# clients.http logs the retry at INFO. Prefect 3 sets no level on its extra loggers, so without
# one of their own leadflow's loggers inherit the root's WARNING and the line never reaches
# the run log; `operator_level`, when set, is what an operator configured for `clients`.
INFO_SCRIPT = """
import asyncio, json, logging, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

operator_level = {operator_level!r}
if operator_level:
    logging.getLogger("clients").setLevel(operator_level)

answers = [503, 200]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_GET(self):
        body = b"{{}}"
        self.send_response(answers.pop(0) if answers else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()

def prefect_first():
    from prefect import flow
    import leadflow

def leadflow_first():
    import leadflow
    from prefect import flow

{order}()
import httpx
from prefect import flow
from prefect.logging.handlers import APILogHandler
from clients.http import ApiTransport, RetryPolicy

seen = []
APILogHandler.emit = lambda self, record: seen.append([record.name, record.levelname,
                                                       record.getMessage()])

async def fetch():
    async with httpx.AsyncClient() as http:
        transport = ApiTransport(http, source="probe", base_url=f"http://127.0.0.1:{{server.server_port}}",
                                 auth_headers={{}}, policy=RetryPolicy(max_attempts=2, base_s=0.01),
                                 attempt_deadline_s=10)
        await transport.request("GET", "/search", endpoint="search", parse=lambda body: body,
                                units=lambda body: 1)

@flow
def probe():
    asyncio.run(fetch())

probe()
print(json.dumps([s for s in seen if s[0].startswith("clients")]))
"""


def _run_probe(order: str, operator_level: str, tmp_path: Path) -> list[list[str]]:
    script = INFO_SCRIPT.format(order=order, operator_level=operator_level)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_LOGGING_LEVEL", None)
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    seen: list[list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


@pytest.mark.parametrize("order", ["prefect_first", "leadflow_first"])
def test_info_lines_of_leadflow_loggers_reach_the_run_log(order: str, tmp_path: Path) -> None:
    seen = _run_probe(order, "", tmp_path)
    assert [(name, level) for name, level, _ in seen] == [("clients.http", "INFO")], seen
    assert seen[0][2].startswith("probe search attempt 1/2 failed")


@pytest.mark.parametrize("order", ["prefect_first", "leadflow_first"])
def test_a_level_the_operator_set_is_kept(order: str, tmp_path: Path) -> None:
    assert _run_probe(order, "WARNING", tmp_path) == []


QUIET = """
import logging
import leadflow  # no Prefect in this process: nothing configures logging
logging.getLogger("clients.http").info("not printed")
logging.getLogger("tasks.outreach").info("not printed either")
"""


def test_without_prefect_an_info_line_is_not_printed() -> None:
    done = subprocess.run([sys.executable, "-c", QUIET], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "printed" not in done.stderr + done.stdout
