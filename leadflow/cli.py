"""The `leadflow` command line. Heavy imports (Prefect, pandas, Great Expectations) happen inside
each command so that `leadflow --help` stays fast."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="leadflow: find, enrich, score and contact B2B leads.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


class Source(StrEnum):
    apollo = "apollo"
    google_places = "google_places"
    pdl = "pdl"


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"Batch {summary['batch_id']}", show_header=False)
    tiers = summary.get("tier_distribution") or {}
    rows = [
        ("batch id", summary["batch_id"]),
        ("sources used", ", ".join(summary.get("sources_used") or []) or "-"),
        ("leads generated", summary["leads_generated"]),
        ("merged duplicates", summary["leads_merged"]),
        ("rejected rows", summary["rows_rejected"]),
        ("average score", "-" if summary.get("avg_score") is None else summary["avg_score"]),
        ("tiers", "  ".join(f"{t}: {tiers.get(t, 0)}" for t in ("hot", "warm", "cold"))),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    for note in summary.get("notes") or []:
        table.add_row("note", note)
    return table


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic) for LEADFLOW_DATABASE_URL."""
    from leadflow.cli_outreach import migrated_database
    from models.db import safe_url

    console.print(f"schema at head: {safe_url(migrated_database())}")


@app.command("warehouse-doc")
def warehouse_doc(
    check: bool = typer.Option(False, "--check", help="Fail (exit 1) if the file is stale."),
    out: Path = typer.Option(None, "--out", help="Where to write (default docs/warehouse.md)."),
) -> None:
    """Write docs/warehouse.md (tables, columns, views and their comments) from the models."""
    from models.warehouse_docs import DOC_PATH, warehouse_doc_is_current, write_warehouse_doc

    path = out or DOC_PATH
    if check:
        if not warehouse_doc_is_current(path):
            err.print(f"{path} is stale: run `leadflow warehouse-doc`")
            raise typer.Exit(1)
        console.print(f"{path} is current")
        return
    changed = write_warehouse_doc(path)
    console.print(f"{'wrote' if changed else 'unchanged:'} {path}")


@app.callback()
def _settings_first() -> None:
    """Refuse to run any command on settings that do not load, saying which and why."""
    from pydantic import ValidationError

    from leadflow.settings import get_settings, settings_errors

    try:
        get_settings()
    except ValidationError as exc:
        err.print("invalid settings:\n  " + "\n  ".join(settings_errors(exc)),
                  soft_wrap=True, markup=False)
        raise typer.Exit(2) from None


def _check_search(industry: str, location: str) -> None:
    """Refuse, in one line (exit 2), a search the generate-leads flow's typed parameters would
    refuse with a Prefect traceback: blank, or longer than MAX_SEARCH_TEXT."""
    from leadflow.settings import MAX_SEARCH_TEXT

    for name, value in (("--industry", industry), ("--location", location)):
        if not value.strip():
            err.print(f"{name} must not be blank")
            raise typer.Exit(2)
        if len(value.strip()) > MAX_SEARCH_TEXT:
            err.print(f"{name} must be at most {MAX_SEARCH_TEXT} characters")
            raise typer.Exit(2)


@app.command()
def doctor() -> None:
    """Check configuration and connectivity: database, migrations, API keys, SMTP, tracking."""
    from rich.markup import escape

    from leadflow.doctor import run_checks

    checks = run_checks()
    table = Table(title="leadflow doctor")
    for heading in ("check", "status", "detail", "how to fix"):
        table.add_column(heading, overflow="fold")
    for c in checks:
        status = "[green]ok[/green]" if c.ok else (
            "[yellow]warn[/yellow]" if c.severity == "warning" else "[red]FAIL[/red]")
        table.add_row(escape(c.name), status, escape(c.detail), escape(c.fix))
    console.print(table)
    if any(c.failed for c in checks):
        raise typer.Exit(1)


@app.command("sweep-batches")
def sweep_batches() -> None:
    """Mark failed the lead batches left running by a run that died (no sign of life for
    LEADFLOW_BATCH_STALE_AFTER_S); each generate or import run does this when it starts."""
    from leadflow.cli_outreach import migrated_database
    from leadflow.settings import get_settings
    from models.db import session_scope
    from tasks.stale_batches import sweep_stale_batches

    db = migrated_database()
    with session_scope(db) as session:
        swept = sweep_stale_batches(session, get_settings().batch_stale_after_s)
    for stale in swept:
        console.print(f"batch {stale.batch_id} ({stale.kind}): marked failed, no sign of life "
                      f"since {stale.last_seen:%Y-%m-%d %H:%M:%S} UTC")
    if not swept:
        console.print("no batch left running by a run that died")


@app.command()
def rekey(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would change; write "
                                 "nothing."),
    batch_size: int = typer.Option(5000, "--batch-size", min=1, max=100_000,
                                   help="Leads per transaction (a load waits for one at most)."),
) -> None:
    """Recompute the dedupe match keys of stored leads with today's rules (after an upgrade
    that changed them), so that new rows match leads loaded before. Runs may go on meanwhile."""
    from leadflow.cli_outreach import migrated_database
    from tasks.rekey import rekey_leads

    db = migrated_database()
    result = rekey_leads(db, batch_size=batch_size, dry_run=dry_run)
    for lead in result.examples:
        changes = ", ".join(f"{c} {old!r} -> {new!r}" for c, old, new in lead.changed)
        console.print(f"lead {lead.lead_id}: {changes}", markup=False, highlight=False)
    console.print(f"{result.scanned} leads scanned, {result.rekeyed} "
                  f"{'would be re-keyed (dry run: nothing written)' if dry_run else 're-keyed'}")


@app.command()
def generate(
    source: Source = typer.Option(Source.apollo, help="Where to look for leads first."),
    industry: str = typer.Option("salon", help="Industry keyword, e.g. salon, dental clinic."),
    location: str = typer.Option("Austin, TX", help="City, 'City, ST', state or country."),
    # max: leadflow.settings.MAX_RESULTS, written out (settings are imported when a command runs).
    max_results: int = typer.Option(200, min=1, max=1_000_000, help="How many leads to fetch."),
    enrich: bool = typer.Option(True, help="Find and verify emails (Hunter)."),
    analyse: bool = typer.Option(True, help="Fetch and analyse the websites."),
) -> None:
    """Run the lead-generation flow once and print its summary."""
    from rich.markup import escape

    from flows.generate_leads import generate_leads
    from leadflow.cli_outreach import migrated_database
    from tasks.sources import NoSourceAvailable

    _check_search(industry, location)
    migrated_database()
    try:
        summary = generate_leads(
            source=source.value, industry=industry, location=location,
            max_results=max_results, enrich=enrich, analyse=analyse,
        )
    except NoSourceAvailable as exc:
        err.print(f"[red]lead generation failed:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(_summary_table(summary))


@app.command("import-csv")
def import_csv(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    chunk_rows: int = typer.Option(5000, min=1, max=100_000, help="Rows per chunk."),
) -> None:
    """Import a LinkedIn Sales Navigator export or a generic CSV of companies/contacts."""
    from rich.markup import escape

    from flows.import_csv import import_csv as import_flow
    from leadflow.cli_outreach import migrated_database
    from tasks.csv_import import CsvFormatError, read_leads_csv

    try:
        # A file that cannot be imported at all is refused here, in one line, before a flow
        # run starts (the flow refuses it too, when run from a deployment).
        next(read_leads_csv(path, chunk_rows=1))
        migrated_database()
        summary = import_flow(path=str(path.resolve()), chunk_rows=chunk_rows)
    except CsvFormatError as exc:
        err.print(f"[red]cannot import {escape(str(path))}:[/red] {escape(str(exc))}",
                  soft_wrap=True)
        raise typer.Exit(2) from exc
    console.print(_summary_table(summary))


@app.command("analyse-site")
def analyse_site(
    targets: list[str] = typer.Argument(None, help="A URL, or with --html, local HTML files."),
    html: bool = typer.Option(False, "--html", help="The arguments are local HTML files."),
    as_url: str = typer.Option("https://example.com/", "--url", help="URL the files came from."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    refresh: bool = typer.Option(
        False, "--refresh", help="Fetch URLs again even if the 30-day cache has them."),
) -> None:
    """Detect booking tools, contact forms, booking keywords, analytics and digital maturity.
    URLs are served from the per-domain cache (website_analyses) when fresh, and stored there."""
    from tasks.website.analyse import analyse_files, analyse_url

    if not targets:
        err.print("give a URL, or --html FILE [FILE ...]")
        raise typer.Exit(2)
    if html:
        missing = [t for t in targets if not Path(t).is_file()]
        if missing:
            err.print(f"not a file: {', '.join(missing)}")
            raise typer.Exit(2)
        results = analyse_files([Path(t) for t in targets], url=as_url)
    else:
        from leadflow.cli_outreach import migrated_database

        migrated_database()
        results = [analyse_url(t, refresh=refresh) for t in targets]
    for result in results:
        if as_json:
            print(json.dumps(result))
        else:
            console.print(result)


@app.command("dedupe-csv")
def dedupe_csv(
    input_csv: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    out: Path = typer.Option(..., "--out", dir_okay=False, help="Where to write id,cluster_id."),
) -> None:
    """Cluster the rows of a companies CSV (id,company_name,address,city,phone) into businesses."""
    from rich.markup import escape

    from tasks.dedupe import DedupeCsvError
    from tasks.dedupe import dedupe_csv as run

    try:
        report = run(input_csv, out)
    except DedupeCsvError as exc:
        err.print(f"[red]cannot dedupe:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    except OSError as exc:  # the output cannot be written (its folder, permissions, full disk)
        where = f" ({exc.filename})" if exc.filename else ""
        err.print(f"[red]cannot write {escape(str(out))}:[/red] "
                  f"{escape((exc.strerror or str(exc)) + where)}", soft_wrap=True)
        raise typer.Exit(1) from None
    err.print(
        f"{report.rows} rows, {report.clusters} businesses, {report.duplicates} duplicates "
        f"({report.encoding}); wrote {escape(str(out))}", soft_wrap=True,
    )
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)


@app.command()
def sandbox(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8799, min=1, max=65_535),
    businesses: int = typer.Option(20_000, min=1, help="Size of the synthetic dataset."),
    seed: int = typer.Option(7),
    latency_ms: int = typer.Option(0, min=0, help="Latency added to every response."),
    faults: str = typer.Option("", help='Fault config as JSON, e.g. {"apollo": {"rate": 0.1}}.'),
) -> None:
    """Serve the local stand-in for Apollo, Google Places, PDL, Hunter, OpenAI and the websites."""
    from sandbox.environment import sandbox_env
    from sandbox.faults import FaultConfigError, parse_faults
    from sandbox.server import serve

    fault_config = None
    if faults:
        try:  # checked before anything starts, as `python -m sandbox` does
            fault_config = json.loads(faults)
            parse_faults(fault_config)
        except (json.JSONDecodeError, FaultConfigError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--faults") from None
    err.print("point leadflow at it with:")
    for key, value in sandbox_env(host, port).items():
        # One line each, whatever the terminal's width (they are copied into a shell).
        err.print(f"  export {key}='{value}'", soft_wrap=True, markup=False, highlight=False)
    serve(host, port, businesses, seed, latency_ms, fault_config)


@app.command()
def demo(
    # The flow's bounds, as `generate` has them: out of range is a usage error, not a traceback.
    max_results: int = typer.Option(200, min=1, max=1_000_000, help="Leads to generate."),
    industry: str = typer.Option("salon"),
    location: str = typer.Option("Austin, TX"),
    outreach_leads: int = typer.Option(
        25, min=0, help="Leads to contact in a demo campaign afterwards (0: none)."),
) -> None:
    """Run the whole lead-generation job on the embedded defaults: a SQLite file and the sandbox
    (started here) in place of the external APIs and the businesses' websites. No keys, no
    network."""
    from leadflow.demo import run_demo

    _check_search(industry, location)  # before the sandbox is started
    summary = run_demo(max_results=max_results, industry=industry, location=location,
                       outreach_leads=outreach_leads)
    console.print(_summary_table(summary))
    outreach = summary.get("outreach")
    if outreach:
        table = Table(title=f"Campaign {outreach['campaign_id']} (step 1 sent)",
                      show_header=False)
        sent = outreach["sent"]
        step1: dict[str, Any] = next(
            (r for r in outreach["funnel"] if r["step_number"] == 1), {})
        rows = [
            ("leads linked", outreach["leads_linked"]),
            ("emails sent", sent.get("sent", 0)),
            ("follow-ups scheduled", sum(r["scheduled"] for r in outreach["funnel"])),
            ("not sent (failed/bounced/cancelled)",
             sum(step1.get(k, 0) for k in ("failed", "bounced", "cancelled"))),
            ("outbox (.eml files)", outreach["outbox"]),
        ]
        for key, value in rows:
            table.add_row(key, str(value))
        console.print(table)


from leadflow.cli_outreach import register as _register_outreach  # noqa: E402

_register_outreach(app)

if __name__ == "__main__":
    app()
