"""`serve` runs the app with uvicorn in a process of its own, as `leadflow tracking` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from leadflow import tokens
from tests.conftest import ROOT, free_port, wait_http
from tests.tracking_app.conftest import TRACKING_ENV, Outreach, RunningApp, events, path_of


def test_serve_answers_on_the_given_port_and_stops_cleanly_on_sigterm(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    port = free_port()
    code = f"from tracking_app.serve import serve; serve('127.0.0.1', {port}, {pg_clean!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE,
                            env={**os.environ, **TRACKING_ENV}, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        r = httpx.get(base + path_of(tokens.open_url(outreach.email_ids[0])),
                      headers={"user-agent": "Mozilla/5.0 (X11) Firefox/127.0"}, timeout=10)
        assert r.status_code == 200
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    # uvicorn shuts the app down (the writer drains), then re-raises the signal it caught.
    assert proc.returncode in (0, -15)
    # Structured logs: every line of the server's log is one JSON object, no secret in any.
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any(line["message"].startswith("Application shutdown complete") for line in lines)
    started = next(line for line in lines if line["message"] == "tracking app listening")
    assert started["port"] == port and started["level"] == "info"
    assert TRACKING_ENV["LEADFLOW_TRACKING_SECRET"] not in stderr
    assert [(e.kind, e.email_id) for e in events(pg_clean)] == [("open", outreach.email_ids[0])]
