"""The outreach, tracking and serving commands of the `leadflow` CLI (registered by cli.py).
Imports stay inside the commands so that `leadflow --help` is fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)
campaign_app = typer.Typer(help="Create, fill and run outreach campaigns.", no_args_is_help=True)
# The ids the columns can hold (campaigns.id INTEGER, emails.id BIGINT): a larger one is a usage
# error here, not an overflow traceback from the database driver.
CAMPAIGN_ID_MAX = 2**31 - 1
EMAIL_ID_MAX = 2**63 - 1


def migrated_database() -> str:
    """Migrate the configured database to head and return its URL. A database that cannot be
    used exits with one line saying why, never its password: a malformed URL or unknown driver
    exits 2, a server that is down or refuses the login exits 1."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, OperationalError

    from leadflow.settings import get_settings
    from models.db import safe_url, upgrade_database

    url = get_settings().database_url
    try:
        parsed = make_url(url)
        parsed.get_dialect().import_dbapi()
    except (ArgumentError, ValueError, ImportError):
        # The value itself may hold a password: not shown.
        err.print("LEADFLOW_DATABASE_URL is not a database URL leadflow can use: set it like "
                  "postgresql+psycopg://user:password@host:5432/leadflow or "
                  "sqlite:///path/to/leadflow.db", soft_wrap=True, markup=False)
        raise typer.Exit(2) from None
    try:
        upgrade_database(url)
    except (OperationalError, OSError) as exc:  # OSError: a SQLite folder it cannot create
        orig = exc.orig if isinstance(exc, OperationalError) else None
        reason = str(orig or exc).strip().splitlines()[0]
        if parsed.password:
            reason = reason.replace(str(parsed.password), "***")
        err.print(f"cannot use the database {safe_url(url)}: {reason}\n"
                  "start it or correct LEADFLOW_DATABASE_URL (`leadflow doctor` checks it)",
                  soft_wrap=True, markup=False)
        raise typer.Exit(1) from None
    return url


def _campaign_db(campaign_id: int) -> str:
    """The migrated database, once it is known to hold this campaign (else exit 1, saying so)."""
    from models import Campaign
    from models.db import session_scope

    db = migrated_database()
    with session_scope(db) as session:
        if session.get(Campaign, campaign_id) is None:
            err.print(f"no campaign {campaign_id} (see `leadflow campaign list`)")
            raise typer.Exit(1)
    return db


def _print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print(f"{title}: nothing yet")
        return
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(str(key))
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row.values()))
    console.print(table)


@campaign_app.command("create")
def campaign_create(
    name: str = typer.Option(..., help="Campaign name."),
    industry: str = typer.Option("salon", help="Target industry."),
    location: str = typer.Option("Austin, TX", help="Target location."),
    leads_per_day: int = typer.Option(50, min=1, max=10_000),
    timezone: str = typer.Option("UTC", help="IANA time zone of the schedule and window."),
    hour: int = typer.Option(9, min=0, max=23, help="Local hour of the daily outreach."),
    automated: bool = typer.Option(False, help="Fed by the daily lead generation."),
    ai: bool = typer.Option(False, help="AI-personalised openings (OpenAI)."),
    activate: bool = typer.Option(True, help="Create it active rather than draft."),
) -> None:
    """Create a campaign on the default three-step sequence."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from models.db import session_scope
    from tasks.outreach.defaults import create_campaign

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        err.print(f"unknown time zone {timezone!r}")
        raise typer.Exit(2) from exc
    db = migrated_database()
    with session_scope(db) as session:
        campaign_id = create_campaign(
            session, name=name, target_industry=industry, target_location=location,
            leads_per_day=leads_per_day, timezone=timezone, schedule_hour=hour,
            campaign_type="automated" if automated else "manual",
            ai_personalisation=ai, status="active" if activate else "draft",
        )
    console.print(f"campaign {campaign_id} created")


@campaign_app.command("link")
def campaign_link(
    campaign_id: int = typer.Argument(..., min=1, max=CAMPAIGN_ID_MAX),
    limit: int = typer.Option(50, min=1, max=100_000, help="How many leads at most."),
) -> None:
    """Link the best new leads that match the campaign's industry and location."""
    from tasks.outreach.campaign_leads import link_matching_leads

    db = _campaign_db(campaign_id)
    linked = link_matching_leads(db, campaign_id, limit)
    console.print(f"{linked} leads linked to campaign {campaign_id}")


@campaign_app.command("execute")
def campaign_execute(
    campaign_id: int = typer.Argument(..., min=1, max=CAMPAIGN_ID_MAX),
    # max: the flow's bound on max_leads (flows/execute_campaign.py), written out.
    max_leads: int = typer.Option(None, min=1, max=100_000,
                                  help="Contact at most this many leads."),
) -> None:
    """Run the execute-campaign flow: route, schedule the sequence, send the first emails."""
    from flows.execute_campaign import execute_campaign

    _campaign_db(campaign_id)
    result = execute_campaign(campaign_id=campaign_id, max_leads=max_leads)
    _print_rows(f"campaign {campaign_id}", result["funnel"])


@campaign_app.command("list")
def campaign_list() -> None:
    """Campaigns and their figures."""
    from sqlalchemy import select

    from models import Campaign
    from models.db import session_scope

    with session_scope(migrated_database()) as session:
        rows = [
            {"id": c.id, "name": c.name, "status": c.status, "type": c.campaign_type,
             "hour": f"{c.schedule_hour}:00 {c.timezone}", "leads": c.leads_generated,
             "contacted": c.leads_contacted, "sent": c.emails_sent, "opened": c.emails_opened,
             "clicked": c.emails_clicked, "replied": c.emails_replied}
            for c in session.scalars(select(Campaign).order_by(Campaign.id))
        ]
    _print_rows("campaigns", rows)


def outreach() -> None:
    """Run the daily-outreach flow once (campaigns whose local hour has come)."""
    from flows.daily_outreach import daily_outreach

    migrated_database()
    _print_rows("outreach", daily_outreach()["funnel"])


def follow_ups() -> None:
    """Run the follow-up checker once: compose and send every due follow-up."""
    from flows.follow_up_checker import follow_up_checker

    migrated_database()
    _print_rows("follow-ups", follow_up_checker()["funnel"])


def reply(
    address: str = typer.Option(None, help="The address that replied."),
    message_id: str = typer.Option(None, help="The Message-ID replied to (In-Reply-To)."),
) -> None:
    """Record a reply: the lead's sequence stops and the campaign counts it."""
    from tasks.outreach.replies import record_reply

    if not address and not message_id:
        err.print("give --address or --message-id")
        raise typer.Exit(2)
    recorded = record_reply(migrated_database(), address=address, message_id=message_id)
    if recorded is None:
        err.print("no sent email matches")
        raise typer.Exit(1)
    console.print(f"reply recorded on email {recorded.email_id}; "
                  f"{recorded.steps_cancelled} pending steps cancelled")


def tracking(
    host: str = typer.Option(None, help="Default: LEADFLOW_TRACKING_HOST."),
    port: int = typer.Option(None, min=1, max=65_535, help="Default: LEADFLOW_TRACKING_PORT."),
) -> None:
    """Serve the open/click/unsubscribe tracking app (uvicorn) on the configured database."""
    from leadflow.settings import get_settings
    from leadflow.tokens import TrackingSecretError, tracking_key
    from tracking_app.serve import serve

    settings = get_settings()
    migrated_database()
    try:
        tracking_key()  # refused before the server starts, with a message instead of a trace
    except TrackingSecretError as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None
    serve(host or settings.tracking_host, port or settings.tracking_port)


def serve(
    limit: int = typer.Option(None, min=1, help="At most this many runs at once."),
) -> None:
    """Serve every deployment, schedules included, from this process (single machine): they
    appear in the Prefect UI under Deployments and run here."""
    from prefect import serve as prefect_serve

    from deployments.catalog import runner_deployments
    from leadflow.settings import get_settings

    migrated_database()
    prefect_serve(*runner_deployments(get_settings().schedule_timezone), limit=limit)


def deployments(
    write: bool = typer.Option(False, "--write", help="Rewrite prefect.yaml."),
    check: bool = typer.Option(False, "--check", help="Exit 1 if prefect.yaml is stale."),
) -> None:
    """Render prefect.yaml from deployments/catalog.py (time zone LEADFLOW_SCHEDULE_TIMEZONE)."""
    from deployments.catalog import render_prefect_yaml
    from leadflow.settings import get_settings

    text = render_prefect_yaml(get_settings().schedule_timezone)
    if not (check or write):
        typer.echo(text, nl=False)  # as is: YAML must not be wrapped to the terminal's width
        return
    path = _project_dir() / "prefect.yaml"
    if check:
        if not path.exists() or path.read_text() != text:
            err.print("prefect.yaml is stale: run `leadflow deployments --write`")
            raise typer.Exit(1)
        console.print("prefect.yaml is current")
    else:
        path.write_text(text)
        console.print(f"wrote {path}")


def deploy() -> None:
    """`prefect deploy --all` with the schedules in LEADFLOW_SCHEDULE_TIMEZONE (prefect.yaml in
    the repository carries UTC): renders the deployments with the current settings and deploys
    them to the Prefect server at PREFECT_API_URL (process work pool `leadflow-process`).
    Works from any directory: Prefect reads the entrypoints from the project's checkout."""
    import subprocess
    import sys

    from deployments.catalog import render_prefect_yaml
    from leadflow.settings import get_settings

    project = _project_dir()
    timezone = get_settings().schedule_timezone
    rendered = project / ".leadflow" / "prefect.deploy.yaml"
    rendered.parent.mkdir(parents=True, exist_ok=True)
    rendered.write_text(render_prefect_yaml(timezone))
    console.print(f"deploying every job from {project} with schedules in {timezone}")
    done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all",
                           "--prefect-file", str(rendered)], cwd=project)
    raise typer.Exit(done.returncode)


def _project_dir() -> Path:
    """The checkout (leadflow/project.py), or exit 2 saying how to name it."""
    from leadflow.project import ProjectDirError, project_dir

    try:
        return project_dir()
    except ProjectDirError as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None


review_app = typer.Typer(
    help="Emails whose SMTP hand-off may or may not have happened (a worker died mid-send): "
    "check the provider's logs, then requeue or mark them sent.", no_args_is_help=True)


@review_app.command("list")
def review_list() -> None:
    """Emails waiting for a person's decision."""
    from sqlalchemy import select

    from models import Email
    from models.db import session_scope

    with session_scope(migrated_database()) as session:
        rows = [
            {"email": e.id, "campaign": e.campaign_id, "step": e.step_number, "to": e.to_email,
             "message_id": e.message_id, "claimed_at": e.claimed_at, "by": e.claimed_by,
             "why": e.last_error}
            for e in session.scalars(select(Email).where(Email.status == "review")
                                     .order_by(Email.id))
        ]
    _print_rows("emails in review", rows)


@review_app.command("requeue")
def review_requeue(email_ids: list[int] = typer.Argument(..., min=1, max=EMAIL_ID_MAX,
                                                          help="Email ids.")) -> None:
    """The server does not have them: send them again."""
    from tasks.outreach.queue import requeue_review

    console.print(f"{requeue_review(migrated_database(), email_ids)} emails back in the queue")


@review_app.command("mark-sent")
def review_mark_sent(email_ids: list[int] = typer.Argument(..., min=1, max=EMAIL_ID_MAX,
                                                          help="Email ids.")) -> None:
    """The server did take them: record them as sent (the sequence goes on)."""
    from tasks.outreach.queue import mark_review_sent

    console.print(f"{mark_review_sent(migrated_database(), email_ids)} emails recorded as sent")


def register(app: typer.Typer) -> None:
    app.add_typer(campaign_app, name="campaign")
    app.add_typer(review_app, name="review")
    app.command()(outreach)
    app.command("follow-ups")(follow_ups)
    app.command()(reply)
    app.command()(tracking)
    app.command()(serve)
    app.command()(deployments)
    app.command()(deploy)
