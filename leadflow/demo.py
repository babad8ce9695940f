"""The embedded-defaults demo: starts the sandbox on a free loopback port, points the settings at
it and at a SQLite file, and runs the lead-generation flow end to end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
from rich.console import Console

from leadflow.settings import reset_settings_cache

console = Console(stderr=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sandbox(
    businesses: int = 20_000, latency_ms: int = 0
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `python -m sandbox` on a free port and wait until it answers."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port),
         "--businesses", str(businesses), "--latency-ms", str(latency_ms)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the sandbox exited with status {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the sandbox did not start within 60 s")


def run_demo(max_results: int, industry: str, location: str,
             outreach_leads: int = 25) -> dict[str, Any]:
    from sandbox.environment import sandbox_env

    with console.status("starting the sandbox (stand-in for the APIs and websites)..."):
        proc, port = start_sandbox()
    try:
        os.environ.update(sandbox_env("127.0.0.1", port))
        reset_settings_cache()
        from flows.generate_leads import generate_leads
        from leadflow.settings import get_settings
        from models.db import safe_url, upgrade_database

        console.print(f"database: {safe_url(get_settings().database_url)}")
        with console.status("migrating the database..."):
            upgrade_database()
        console.print(
            f"generating up to {max_results} {industry} leads in {location} "
            "(fetch -> enrich -> analyse -> score -> dedupe -> validate -> load)"
        )
        summary = generate_leads(source="apollo", industry=industry, location=location,
                                 max_results=max_results, enrich=True, analyse=True)
        if outreach_leads:
            summary["outreach"] = run_outreach(industry, location, outreach_leads)
        return summary
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_outreach(industry: str, location: str, leads: int) -> dict[str, Any]:
    """A demo campaign on the default sequence with AI openings (the sandbox's OpenAI): link
    the best new leads and run execute-campaign. With no SMTP provider configured, the emails
    land in the outbox folder as .eml files."""
    from flows.execute_campaign import execute_campaign
    from leadflow.settings import get_settings
    from models.db import session_scope
    from tasks.outreach.campaign_leads import link_matching_leads
    from tasks.outreach.defaults import create_campaign

    settings = get_settings()
    db = settings.database_url
    with session_scope(db) as session:
        campaign_id = create_campaign(
            session, name=f"Demo: {industry} in {location}", status="active",
            target_industry=industry, target_location=location, ai_personalisation=True,
            # The demo sends whenever it is run: the whole day, every day.
            send_window_start_hour=0, send_window_end_hour=0, send_weekdays=list(range(7)),
        )
    linked = link_matching_leads(db, campaign_id, leads)
    console.print(f"campaign {campaign_id}: {linked} leads linked; executing "
                  "(route -> compose -> send step 1; steps 2 and 3 scheduled)")
    result = execute_campaign(campaign_id=campaign_id)
    return {"campaign_id": campaign_id, "leads_linked": linked,
            "outbox": str(settings.outbox_dir.resolve()), "funnel": result["funnel"],
            "sent": result["sent"]}
