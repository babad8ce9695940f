"""The `leadflow` command line, run for real in a subprocess against a temporary SQLite file
and the fixture files: the acceptance interfaces of analyse-site and dedupe-csv, import-csv's
refusal of a file it cannot import, and the command list."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, Sandbox, free_port
from tests.flows.conftest import prefect_server  # noqa: F401  (one Prefect server per session)

SITES = FIXTURES / "sites"
ACCEPTANCE_KEYS = [
    "file", "booking_tools", "has_contact_form", "booking_keyword_count", "has_analytics",
    "digital_maturity",
]  # fmt: skip


@pytest.fixture()
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with a fresh SQLite database and Prefect home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADFLOW_", "PREFECT_"))}
    env.update(
        LEADFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'leadflow.db'}",
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        DO_NOT_TRACK="1",
        GX_ANALYTICS_ENABLED="false",
        COLUMNS="200",
    )
    return env


def leadflow(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadflow.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=240,
    )


def embed_page(tmp_path: Path, tool: str, kind: str) -> Path:
    """The fixture page with one booking tool embedded, as test_detect builds it."""
    embeds = json.loads((SITES / "booking_embeds.json").read_text())
    page = (SITES / "embed_page.html").read_text().replace("{embed}", embeds[tool][kind])
    path = tmp_path / f"{tool}_{kind}.html"
    path.write_text(page, encoding="utf-8")
    return path


def test_help_lists_the_commands(cli_env: dict[str, str], tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "leadflow"  # the installed entry point
    result = subprocess.run([str(script), "--help"], env=cli_env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("generate", "import-csv", "analyse-site", "dedupe-csv", "migrate", "demo",
                    "sandbox", "campaign", "outreach", "follow-ups", "reply", "review",
                    "tracking", "serve", "deploy", "deployments", "doctor", "warehouse-doc",
                    "sweep-batches", "rekey"):
        assert command in result.stdout


def test_sweep_batches_marks_failed_only_the_batches_of_dead_runs(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from models import LeadBatch
    from models.db import session_scope, upgrade_database

    url = cli_env["LEADFLOW_DATABASE_URL"]
    upgrade_database(url)
    now = datetime.now(UTC)
    with session_scope(url) as session:
        for key, silent_h in (("dead", 3.0), ("alive", 0.1)):
            session.add(LeadBatch(run_key=key, kind="generate", source="apollo",
                                  status="running", started_at=now - timedelta(hours=9),
                                  heartbeat_at=now - timedelta(hours=silent_h)))

    first = leadflow(cli_env, tmp_path, "sweep-batches")
    again = leadflow(cli_env, tmp_path, "sweep-batches")

    assert first.returncode == 0, first.stderr
    assert "batch 1 (generate): marked failed, no sign of life since" in first.stdout
    assert "batch 2" not in first.stdout
    assert "no batch left running by a run that died" in again.stdout
    with session_scope(url) as session:
        assert [(b.run_key, b.status) for b in session.query(LeadBatch).order_by(LeadBatch.id)
                ] == [("dead", "failed"), ("alive", "running")]


def test_rekey_reports_then_rewrites_stale_match_keys_and_dry_run_writes_nothing(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    from models import Lead
    from models.db import session_scope, upgrade_database

    url = cli_env["LEADFLOW_DATABASE_URL"]
    upgrade_database(url)
    with session_scope(url) as session:  # phone keys as a release before the 00 prefix fix
        for name, phone, e164 in (("Soho Nails", "0044 20 7946 0958", None),
                                  ("Bella Salon", "(512) 555-0142", "+15125550142")):
            session.add(Lead(company_name=name, phone=phone, phone_e164=e164, source="csv",
                             sources=["csv"], name_key=name.lower(), name_block=name.split()[0]
                             .lower()))

    def phone_keys() -> list[tuple[str | None, int | None]]:
        with session_scope(url) as session:
            return [(lead.phone_e164, lead.key_version)
                    for lead in session.query(Lead).order_by(Lead.id)]

    dry = leadflow(cli_env, tmp_path, "rekey", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "lead 1: phone_e164 None -> '+442079460958'" in dry.stdout
    assert "2 leads scanned, 1 would be re-keyed (dry run: nothing written)" in dry.stdout
    assert phone_keys() == [(None, None), ("+15125550142", None)]

    done = leadflow(cli_env, tmp_path, "rekey", "--batch-size", "1")
    again = leadflow(cli_env, tmp_path, "rekey")
    assert done.returncode == 0, done.stderr
    assert "2 leads scanned, 1 re-keyed" in done.stdout
    assert phone_keys() == [("+442079460958", 1), ("+15125550142", None)]
    assert "2 leads scanned, 0 re-keyed" in again.stdout

    for bad in ("0", "-3", "100001", "many"):
        refused = leadflow(cli_env, tmp_path, "rekey", "--batch-size", bad)
        assert refused.returncode == 2, refused.stderr
        assert "Invalid value for '--batch-size'" in usage_error(refused.stderr)
        assert "Traceback" not in refused.stderr


def test_analyse_site_prints_one_json_object_per_file_per_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    files = [
        embed_page(tmp_path, "calendly", "script"),
        embed_page(tmp_path, "acuity", "iframe"),
        SITES / "maturity_full.html",
        SITES / "decoys.html",
    ]

    result = leadflow(cli_env, tmp_path, "analyse-site", "--html", *map(str, files), "--json")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(files)
    objects = [json.loads(line) for line in lines]
    assert [list(o) for o in objects] == [ACCEPTANCE_KEYS] * len(files)
    assert [o["file"] for o in objects] == [str(f) for f in files]
    assert [o["booking_tools"] for o in objects] == [["calendly"], ["acuity"], ["mindbody"], []]
    full, decoys = objects[2], objects[3]
    assert full["has_analytics"] is True and full["digital_maturity"] == 100
    assert decoys["has_contact_form"] is False and decoys["has_analytics"] is False
    for o in objects:
        assert isinstance(o["booking_keyword_count"], int) and o["booking_keyword_count"] >= 0
        assert isinstance(o["digital_maturity"], int) and 0 <= o["digital_maturity"] <= 100


def test_analyse_site_refuses_a_missing_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = leadflow(cli_env, tmp_path, "analyse-site", "--html", "nope.html", "--json")

    assert result.returncode == 2
    assert "not a file: nope.html" in result.stderr
    assert result.stdout == ""


def test_analyse_site_url_uses_the_30_day_cache_unless_refresh(
    cli_env: dict[str, str], tmp_path: Path, sandbox: Sandbox
) -> None:
    import httpx

    env = {**cli_env, **sandbox.env()}
    with httpx.Client(base_url=sandbox.base_url, timeout=5) as client:
        business = next(b for b in (client.get(f"/_sandbox/businesses/{i}").json()
                                    for i in range(50))
                        if b.get("site") and not b["site"]["fault"])
    url = f"http://{business['domain']}/"

    runs = [leadflow(env, tmp_path, "analyse-site", url, "--json", *extra)
            for extra in ((), (), ("--refresh",))]

    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    first, second, third = (json.loads(r.stdout) for r in runs)
    assert list(first)[:len(ACCEPTANCE_KEYS)] == ACCEPTANCE_KEYS
    assert (first["cached"], second["cached"], third["cached"]) == (False, True, False)
    assert first["truncated"] is False
    assert {k: first[k] for k in ACCEPTANCE_KEYS} == {k: second[k] for k in ACCEPTANCE_KEYS}
    with sqlite3.connect(tmp_path / "leadflow.db") as db:  # the table analysts query
        assert db.execute("SELECT count(*) FROM website_analyses").fetchone() == (1,)


def test_dedupe_csv_writes_a_cluster_id_for_every_row_and_groups_known_duplicates(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    source = FIXTURES / "dedupe" / "companies_labelled.csv"
    out = tmp_path / "clusters.csv"

    result = leadflow(cli_env, tmp_path, "dedupe-csv", str(source), "--out", str(out))

    assert result.returncode == 0, result.stderr
    with source.open(newline="") as fh:
        labelled = list(csv.DictReader(fh))
    with out.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["id", "cluster_id"]
        cluster = {row["id"]: row["cluster_id"] for row in reader}
    assert list(cluster) == [row["id"] for row in labelled]
    assert set(cluster.values()) <= set(cluster)  # a cluster is named by one of its rows
    assert cluster["a1"] == cluster["a2"] == cluster["a3"] == cluster["a4"]
    assert cluster["t1"] == cluster["t2"] and cluster["q1"] == cluster["q2"]
    assert cluster["a1"] != cluster["b1"] and cluster["f1"] != cluster["f2"]
    # Against the labels: the clustering is the labelled partition, row for row.
    by_entity: dict[str, set[str]] = {}
    by_cluster: dict[str, set[str]] = {}
    for row in labelled:
        by_entity.setdefault(row["entity"], set()).add(row["id"])
        by_cluster.setdefault(cluster[row["id"]], set()).add(row["id"])
    assert sorted(map(sorted, by_cluster.values())) == sorted(map(sorted, by_entity.values()))
    businesses = len(by_entity)
    assert f"{len(labelled)} rows, {businesses} businesses" in result.stderr


def test_dedupe_csv_without_required_columns_exits_2_with_the_reason(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "clusters.csv"
    source = FIXTURES / "csv" / "generic_companies.csv"  # no id column

    result = leadflow(cli_env, tmp_path, "dedupe-csv", str(source), "--out", str(out))

    assert result.returncode == 2
    assert "lacks required column(s) id" in result.stderr
    assert not out.exists()


def test_import_csv_of_a_file_without_a_usable_header_exits_2_with_the_message(
    cli_env: dict[str, str], tmp_path: Path, prefect_server: str  # noqa: F811
) -> None:
    source = FIXTURES / "csv" / "missing_required_column.csv"

    # The session's Prefect server, which saves the CLI starting a temporary one of its own.
    env = {**cli_env, "PREFECT_API_URL": prefect_server}
    result = leadflow(env, tmp_path, "import-csv", str(source))

    assert result.returncode == 2, result.stderr
    message = [line for line in result.stderr.splitlines() if line.startswith("cannot import")]
    assert message == [
        f"cannot import {source}: missing_required_column.csv: no usable header in the first "
        "10 lines (read up to line 3). Columns found: 'Phone', 'City', 'Notes'. Expected a "
        "company name column (company, company name, company_name, account name, account, "
        "business, ...) or an email column (email, e-mail, email address), plus at least one "
        "more known column (website, phone, city, first name, ...)."
    ]
    assert "Batch" not in result.stdout
    # Refused before a flow run starts: said once, no traceback, no batch.
    assert result.stderr.count("no usable header") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "leadflow.db").exists()



def test_campaign_commands_create_link_and_list_on_sqlite(cli_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    created = leadflow(cli_env, tmp_path, "campaign", "create", "--name", "Austin salons",
                       "--timezone", "America/Chicago", "--hour", "10")
    assert created.returncode == 0, created.stderr
    assert "campaign 1 created" in created.stdout
    with sqlite3.connect(tmp_path / "leadflow.db") as conn:
        conn.execute("INSERT INTO leads (company_name, email, email_norm, industry, city, "
                     "source, status, sources, booking_tools, score_breakdown, emails_opened, "
                     "emails_clicked, created_at, updated_at) VALUES ('Rosa Salon', "
                     "'rosa@rosa.example', 'rosa@rosa.example', 'salon', 'Austin', 'csv', "
                     "'new', '[]', '[]', '{}', 0, 0, '2026-01-01', '2026-01-01')")
    linked = leadflow(cli_env, tmp_path, "campaign", "link", "1", "--limit", "5")
    assert linked.returncode == 0 and "1 leads linked to campaign 1" in linked.stdout
    listed = leadflow(cli_env, tmp_path, "campaign", "list")
    assert "Austin salons" in listed.stdout and "10:00 America/Chicago" in listed.stdout
    bad_zone = leadflow(cli_env, tmp_path, "campaign", "create", "--name", "x",
                        "--timezone", "Mars/Olympus")
    assert bad_zone.returncode == 2 and "unknown time zone" in bad_zone.stderr
    nobody = leadflow(cli_env, tmp_path, "reply", "--address", "nobody@x.example")
    assert nobody.returncode == 1 and "no sent email matches" in nobody.stderr
    review = leadflow(cli_env, tmp_path, "review", "list")
    assert review.returncode == 0 and "nothing yet" in review.stdout


def test_campaign_link_and_execute_of_an_unknown_campaign_exit_1_with_a_message(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    for command in (["campaign", "link", "42"], ["campaign", "execute", "42"]):
        done = leadflow(cli_env, tmp_path, *command)
        assert done.returncode == 1, command
        assert "no campaign 42" in done.stderr, command
        assert "Traceback" not in done.stderr and "NoResultFound" not in done.stderr


def test_campaign_execute_accepts_as_many_leads_as_the_flow_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # were the bound missing, the default database lands here
    import typing

    from typer.testing import CliRunner

    from flows.execute_campaign import execute_campaign
    from leadflow.cli import app

    hint = typing.get_type_hints(execute_campaign.fn, include_extras=True)["max_leads"]
    (field,) = hint.__metadata__
    flow_max = next(m.le for m in field.metadata if hasattr(m, "le"))
    # Refused by the CLI, as a usage error, before any database or Prefect server is touched.
    result = CliRunner().invoke(app, ["campaign", "execute", "1", "--max-leads",
                                      str(flow_max + 1)])
    assert result.exit_code == 2
    text = "".join(c for c in result.output if c.isalnum())  # the message, without its box
    assert f"lessthanorequalto{flow_max}" in text


def test_a_database_that_cannot_be_used_is_one_line_without_its_password(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    secret = "pw-7c1e9b"
    down = f"postgresql+psycopg://leadflow:{secret}@127.0.0.1:{free_port()}/leadflow"
    malformed = f"postgresql+psycopg://leadflow:{secret}@127.0.0.1:port/leadflow"
    cases = [(down, 1, "cannot use the database postgresql+psycopg://leadflow:***@127.0.0.1:"),
             (malformed, 2, "LEADFLOW_DATABASE_URL is not a database URL leadflow can use")]
    for url, code, message in cases:
        env = {**cli_env, "LEADFLOW_DATABASE_URL": url}
        for command in (["migrate"], ["campaign", "list"], ["review", "list"]):
            done = leadflow(env, tmp_path, *command)
            assert done.returncode == code, (url, command, done.stderr)
            assert message in done.stderr, command
            assert "Traceback" not in done.stderr and secret not in done.stderr + done.stdout
            assert len(done.stderr.splitlines()) <= 2, done.stderr


def test_generate_accepts_as_many_leads_as_the_flow_does() -> None:
    from typer.testing import CliRunner

    from leadflow.cli import app
    from leadflow.settings import MAX_RESULTS

    result = CliRunner().invoke(app, ["generate", "--max-results", str(MAX_RESULTS + 1)])
    assert result.exit_code == 2
    text = "".join(c for c in result.output if c.isalnum())  # the message, without its box
    assert f"lessthanorequalto{MAX_RESULTS}" in text


@pytest.mark.parametrize("faults, message", [
    ('{"apollo": ', "Expecting value"),
    ('{"nowhere": {"rate": 0.5}}', "unknown target 'nowhere'"),
])
def test_sandbox_refuses_a_bad_fault_config_before_serving(faults: str, message: str) -> None:
    from typer.testing import CliRunner

    from leadflow.cli import app

    result = CliRunner().invoke(app, ["sandbox", "--port", "1", "--faults", faults])
    assert result.exit_code == 2
    assert "--faults" in result.output
    assert message in " ".join(result.output.split()).replace("│", "")


def test_generate_refuses_a_blank_search() -> None:
    from typer.testing import CliRunner

    from leadflow.cli import app

    for option in ("--industry", "--location"):
        result = CliRunner().invoke(app, ["generate", option, "  "])
        assert result.exit_code == 2
        assert f"{option} must not be blank" in result.output


def test_generate_fails_with_a_message_when_no_source_can_be_queried(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # No API key for any source (and no sandbox): every source fails at once.
    done = leadflow(cli_env, tmp_path, "generate", "--max-results", "5")
    assert done.returncode == 1
    assert "lead generation failed: no source could be queried" in done.stderr
    assert "LEADFLOW_PDL_API_KEY" in done.stderr and "no source left to try" in done.stderr
    db = sqlite3.connect(cli_env["LEADFLOW_DATABASE_URL"].removeprefix("sqlite:///"))
    assert db.execute("SELECT status, leads_generated FROM lead_batches").fetchall() == [
        ("failed", 0)]


def usage_error(text: str) -> str:
    """A typer/click usage error's message without its box and line breaks."""
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


@pytest.mark.parametrize("args, message", [
    (["--max-results", "0"], "Invalid value for '--max-results': Input should be greater than"),
    (["--max-results", "-5"], "Invalid value for '--max-results': Input should be greater than"),
    (["--max-results", "1000001"], "Input should be less than or equal to 1000000"),
    (["--industry", "  "], "--industry must not be blank"),
    (["--location", "x" * 201], "--location must be at most 200 characters"),
])
def test_demo_refuses_parameters_the_flow_would_refuse_in_one_message(
    cli_env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    """Were they passed on, the flow's typed parameters would refuse them with a Prefect
    traceback after the sandbox had started; the CLI refuses them first, as usage errors."""
    done = leadflow(cli_env, tmp_path, "demo", *args)

    assert done.returncode == 2, done.stderr[-2000:]
    assert message in usage_error(done.stderr)
    assert "Traceback" not in done.stderr and "ParameterTypeError" not in done.stderr
    assert not (tmp_path / ".leadflow").exists()  # no database, no outbox: nothing started


def test_generate_refuses_a_search_longer_than_the_flow_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # were the check missing, the default database lands here
    from typer.testing import CliRunner

    from flows.generate_leads import generate_leads
    from leadflow.cli import app
    from leadflow.settings import MAX_SEARCH_TEXT

    properties = generate_leads.parameters.properties
    assert properties["industry"]["maxLength"] == MAX_SEARCH_TEXT
    assert properties["location"]["maxLength"] == MAX_SEARCH_TEXT
    for option in ("--industry", "--location"):
        result = CliRunner().invoke(app, ["generate", option, "x" * (MAX_SEARCH_TEXT + 1)])
        assert result.exit_code == 2, result.output
        assert f"{option} must be at most {MAX_SEARCH_TEXT} characters" in result.output
    assert not (tmp_path / ".leadflow").exists()


@pytest.mark.parametrize("args", [
    ["sandbox", "--port", "70000"],
    ["sandbox", "--port", "0"],
    ["sandbox", "--businesses", "0"],
    ["sandbox", "--latency-ms", "-1"],
    ["tracking", "--port", "70000"],
    ["tracking", "--port", "0"],
])
def test_servers_refuse_a_port_or_size_they_cannot_serve_before_starting(
    cli_env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    # Without the check these started serving (uvicorn on port 0 picks any port, a sandbox of
    # no businesses answers nothing): the run is cut at 60 s and the test fails.
    done = leadflow_within(cli_env, tmp_path, 60, *args)

    assert done.returncode == 2, done.stderr[-2000:]
    assert f"Invalid value for '{args[1]}'" in usage_error(done.stderr)


def leadflow_within(env: dict[str, str], cwd: Path, seconds: float, *args: str
                    ) -> subprocess.CompletedProcess[str]:
    """`leadflow(...)`, but a command still running after `seconds` is killed and reported as
    exit code -1 (a server that started instead of refusing its arguments)."""
    try:
        return subprocess.run([sys.executable, "-m", "leadflow.cli", *args], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=seconds)
    except subprocess.TimeoutExpired as exc:
        out = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return subprocess.CompletedProcess(exc.cmd, -1, "", out)


def test_dedupe_csv_to_a_place_it_cannot_write_says_so_in_one_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    source = FIXTURES / "dedupe" / "companies_labelled.csv"
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")

    into_a_folder = leadflow(cli_env, tmp_path, "dedupe-csv", str(source), "--out", ".")
    under_a_file = leadflow(cli_env, tmp_path, "dedupe-csv", str(source),
                            "--out", str(a_file / "clusters.csv"))

    assert into_a_folder.returncode == 2
    assert "Invalid value for '--out': file '.' is a directory" in usage_error(
        into_a_folder.stderr)
    assert under_a_file.returncode == 1
    assert under_a_file.stderr.startswith(f"cannot write {a_file / 'clusters.csv'}: ")
    assert len(under_a_file.stderr.splitlines()) == 1, under_a_file.stderr
    for done in (into_a_folder, under_a_file):
        assert "Traceback" not in done.stderr


def test_ids_beyond_what_the_tables_hold_are_usage_errors_not_overflow_tracebacks(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    huge = str(2**64)
    for command, name in ((["campaign", "execute", huge], "campaign_id"),
                          (["campaign", "link", huge], "campaign_id"),
                          (["review", "requeue", "1", huge], "email_ids"),
                          (["review", "mark-sent", huge], "email_ids")):
        done = leadflow(cli_env, tmp_path, *command)
        assert done.returncode == 2, (command, done.stderr[-2000:])
        assert f"Invalid value for '{name}'" in usage_error(done.stderr), command
        assert "Traceback" not in done.stderr and "OverflowError" not in done.stderr
