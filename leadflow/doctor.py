"""`leadflow doctor`: checks the configuration and what it points at (database and its schema,
API keys or the sandbox, SMTP servers, tracking URL and secret) and says plainly what is wrong
and which setting fixes it. Reads only: it creates no database file, key or table, never logs
in to an SMTP server and never prints a secret."""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from leadflow.settings import LEAD_SOURCES, Settings, get_settings
from leadflow.tokens import MIN_SECRET_LENGTH

API_SOURCES: tuple[str, ...] = ("apollo", "google_places", "pdl", "hunter", "openai")
# What a missing key costs, per API.
_WITHOUT_KEY = {
    "apollo": "this lead source is skipped (the next in LEADFLOW_SOURCE_FALLBACK_ORDER is used)",
    "google_places": "this lead source is skipped (the next in LEADFLOW_SOURCE_FALLBACK_ORDER "
                     "is used)",
    "pdl": "this lead source is skipped (the next in LEADFLOW_SOURCE_FALLBACK_ORDER is used)",
    "hunter": "emails cannot be found or verified",
    "openai": "AI personalisation falls back to the plain templates",
}
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    # A warning is reported but does not make `leadflow doctor` fail.
    severity: Literal["error", "warning"] = "error"

    @property
    def failed(self) -> bool:
        return not self.ok and self.severity == "error"


@dataclass(frozen=True)
class SmtpTarget:
    name: str
    host: str
    port: int
    security: str
    username: str | None
    password_ref: str | None


def run_checks(settings: Settings | None = None) -> list[Check]:
    """Every check, in the order a person would fix them."""
    settings = settings or get_settings()
    checks, providers = check_database(settings.database_url, settings.batch_stale_after_s)
    checks += [check_api(source, settings) for source in API_SOURCES]
    checks.append(check_lead_sources(settings))
    if providers is None:
        checks.append(Check("SMTP providers", False, "not checked: the database is not ready",
                            "fix the database checks above first", severity="warning"))
    elif not providers:
        checks.append(Check(
            "SMTP providers", True,
            f"none configured: emails are written as .eml files to {settings.outbox_dir}",
            "to send for real, add a row to smtp_providers",
        ))
    else:
        timeout = min(CONNECT_TIMEOUT_S, settings.smtp_timeout_s)
        checks += [check_smtp(p, settings, timeout) for p in providers]
    checks.append(check_tracking_url(settings, sending=bool(providers)))
    checks.append(check_tracking_secret(settings))
    return checks


# --- database ------------------------------------------------------------------------------


def _redact(message: str, url: str) -> str:
    password = make_url(url).password
    return message.replace(str(password), "***") if password else message


def _probe_engine(url: str) -> Engine:
    """A one-connection engine with a short connect timeout (not the application's pool)."""
    args = {"connect_timeout": int(CONNECT_TIMEOUT_S)} if url.startswith("postgresql") else {}
    return create_engine(url, poolclass=NullPool, connect_args=args)


def check_database(url: str, stale_after_s: float = 7200.0,
                   ) -> tuple[list[Check], list[SmtpTarget] | None]:
    """Reachable and migrated to head, then no batch left running by a dead run; the active
    SMTP providers when reachable and migrated (else None)."""
    from sqlalchemy.exc import ArgumentError

    from models.db import safe_url

    try:
        shown = safe_url(url)
        make_url(url).get_dialect().import_dbapi()
    except (ArgumentError, ValueError, ImportError):
        # A malformed URL (a port that is no number), an unknown or missing driver. The value
        # itself may hold a password: not shown.
        return [Check("database reachable", False,
                      "LEADFLOW_DATABASE_URL is not a database URL leadflow can use",
                      "set it like postgresql+psycopg://user:password@host:5432/leadflow or "
                      "sqlite:///path/to/leadflow.db")], None
    sqlite_path = _sqlite_file(url)
    if sqlite_path is not None and not sqlite_path.exists():
        return [
            Check("database reachable", True,
                  f"SQLite file {sqlite_path} does not exist yet (embedded default)"),
            Check("database migrated", False, "no schema yet",
                  "run `leadflow migrate` (or any command that runs a flow)"),
        ], None
    engine = _probe_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            reachable = Check("database reachable", True, shown)
            migrated = check_migrated(conn, url)
            providers = load_smtp_targets(conn) if migrated.ok else None
            batches = [check_stale_batches(conn, stale_after_s)] if migrated.ok else []
    except Exception as exc:  # noqa: BLE001 - any driver error means "not reachable"
        reason = _redact(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], url)
        return [
            Check("database reachable", False, f"{shown}: {type(exc).__name__}: {reason}",
                  "start the database or correct LEADFLOW_DATABASE_URL"),
            Check("database migrated", False, "not checked: the database is unreachable",
                  "fix the database connection first"),
        ], None
    finally:
        engine.dispose()
    return [reachable, migrated, *batches], providers


def check_stale_batches(conn: Connection, stale_after_s: float) -> Check:
    """Batches still `running` with no sign of life for longer than LEADFLOW_BATCH_STALE_AFTER_S:
    their run's process was killed outright and never closed them."""
    from tasks.stale_batches import stale_batches

    stale = stale_batches(conn, stale_after_s)
    if not stale:
        return Check("lead batches", True, "no batch left running by a run that died")
    shown = ", ".join(f"{b.batch_id} ({b.kind}, last seen {b.last_seen:%Y-%m-%d %H:%M} UTC)"
                      for b in stale[:5])
    more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
    return Check(
        "lead batches", False,
        f"{len(stale)} batch(es) still running with no sign of life for more than "
        f"LEADFLOW_BATCH_STALE_AFTER_S={stale_after_s:g} s: {shown}{more}",
        "run `leadflow sweep-batches` to mark them failed (the next generate or import run "
        "does it too)",
        severity="warning",
    )


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return None if parsed.database == ":memory:" else Path(parsed.database)


def check_migrated(conn: Connection, url: str) -> Check:
    """The database's Alembic revision against this code's head revision."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from models.db import alembic_config

    current = set(MigrationContext.configure(conn).get_current_heads())
    script = ScriptDirectory.from_config(alembic_config(url))
    heads = set(script.get_heads())
    known = {rev.revision for rev in script.walk_revisions()}
    if current == heads:
        return Check("database migrated", True, f"at revision {', '.join(sorted(heads))} (head)")
    if not current:
        return Check("database migrated", False, "no schema (the database is empty)",
                     "run `leadflow migrate`")
    if not current <= known:
        return Check(
            "database migrated", False,
            f"at revision {', '.join(sorted(current))}, which this leadflow does not know "
            f"(a newer version migrated it)",
            "run the leadflow version that migrated this database",
        )
    return Check("database migrated", False,
                 f"at revision {', '.join(sorted(current))}, head is {', '.join(sorted(heads))}",
                 "run `leadflow migrate`")


def load_smtp_targets(conn: Connection) -> list[SmtpTarget]:
    rows = conn.execute(text(
        "SELECT name, host, port, security, username, password_ref FROM smtp_providers "
        "WHERE is_active ORDER BY priority, id"
    ))
    return [SmtpTarget(*row) for row in rows]


# --- external APIs -------------------------------------------------------------------------


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _key_source(source: str, settings: Settings) -> str | None:
    """Where the key of `source` comes from (never the key), or None when nowhere."""
    env = f"LEADFLOW_{source.upper()}"
    secret = getattr(settings, f"{source}_api_key", None)
    if secret is not None and secret.get_secret_value().strip():
        return f"key from {env}_API_KEY"
    block = getattr(settings, f"{source}_secret_block", None)
    if block:
        return f"key from the Prefect Secret block {block!r} ({env}_SECRET_BLOCK; not loaded here)"
    return None


def check_api(source: str, settings: Settings) -> Check:
    base_url = getattr(settings, f"{source}_base_url")
    env = f"LEADFLOW_{source.upper()}"
    where = (f"sandbox at {base_url}" if _is_loopback(urlsplit(base_url).hostname)
             else f"real API at {base_url}")
    key = _key_source(source, settings)
    if key:
        return Check(f"{source} API", True, f"{where}; {key}")
    return Check(
        f"{source} API", False, f"{where}; no key configured: {_WITHOUT_KEY[source]}",
        f"set {env}_API_KEY (the sandbox accepts any value) or name a Prefect Secret block "
        f"in {env}_SECRET_BLOCK",
        severity="warning",
    )


def check_lead_sources(settings: Settings) -> Check:
    usable = [s for s in settings.source_fallback_order
              if s in LEAD_SOURCES and _key_source(s, settings)]
    if usable:
        return Check("lead sources", True, f"usable, in order: {', '.join(usable)}")
    return Check(
        "lead sources", False,
        "no lead source in LEADFLOW_SOURCE_FALLBACK_ORDER has a key: lead generation cannot "
        "run (CSV import still works)",
        "set LEADFLOW_APOLLO_API_KEY, LEADFLOW_GOOGLE_PLACES_API_KEY or LEADFLOW_PDL_API_KEY, "
        "or run `leadflow sandbox` and use the settings it prints",
    )


# --- SMTP ----------------------------------------------------------------------------------


def _password_source(target: SmtpTarget, settings: Settings) -> str:
    ref = target.password_ref
    if not target.username:
        return "no login"
    if not ref:
        return "login without a password reference"
    if ref in settings.smtp_passwords or ref.lower() in settings.smtp_passwords:
        return f"password under {ref!r} in LEADFLOW_SMTP_PASSWORDS"
    return f"password from the Prefect Secret block {ref!r} (not loaded here)"


def check_smtp(target: SmtpTarget, settings: Settings, timeout_s: float) -> Check:
    """TCP connect and EHLO (and STARTTLS offered, when the provider uses it); no login."""
    name = f"SMTP {target.name}"
    endpoint = f"{target.host}:{target.port} ({target.security})"
    fix = (f"check host, port and security of smtp_providers row {target.name!r}, the network "
           f"or firewall; or set its is_active to false")
    if target.username and target.security not in ("starttls", "tls"):
        return Check(name, False, f"{endpoint}: a login over an unencrypted connection is refused",
                     f"set security to starttls or tls for {target.name!r}")
    try:
        if target.security == "tls":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout_s,
                                                  context=ssl.create_default_context(
                                                      cafile=settings.smtp_ca_file))
        else:
            conn = smtplib.SMTP(target.host, target.port, timeout=timeout_s)
        try:
            code, _ = conn.ehlo()
            offers_starttls = conn.has_extn("starttls")
        finally:
            _quit_quietly(conn)
    except (OSError, smtplib.SMTPException) as exc:
        return Check(name, False, f"{endpoint} unreachable: {type(exc).__name__}: {exc}", fix)
    if code != 250:
        return Check(name, False, f"{endpoint} refused EHLO (reply {code})", fix)
    if target.security == "starttls" and not offers_starttls:
        return Check(name, False, f"{endpoint} answers but does not offer STARTTLS",
                     f"use the server's submission port, or set security of {target.name!r} "
                     f"to tls (port 465)")
    return Check(name, True, f"{endpoint} answers EHLO; {_password_source(target, settings)}; "
                             f"login not tried")


def _quit_quietly(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()


# --- tracking ------------------------------------------------------------------------------


def check_tracking_url(settings: Settings, sending: bool) -> Check:
    url = settings.tracking_base_url
    local = _is_loopback(urlsplit(url).hostname)
    if local and sending:
        return Check(
            "tracking base URL", False,
            f"{url} is this machine: recipients' opens, clicks and unsubscribes cannot reach it",
            "set LEADFLOW_TRACKING_BASE_URL to the public https URL of the tracking app",
            severity="warning",
        )
    if local:
        return Check("tracking base URL", True, f"{url} (local: fine while emails go to the "
                                                f"outbox)")
    return Check("tracking base URL", True, url)


def check_tracking_secret(settings: Settings) -> Check:
    if settings.tracking_secret is not None:
        if len(settings.tracking_secret.get_secret_value().strip()) < MIN_SECRET_LENGTH:
            return Check("tracking secret", False, "LEADFLOW_TRACKING_SECRET is too short",
                         f"set LEADFLOW_TRACKING_SECRET to {MIN_SECRET_LENGTH} or more random "
                         "characters")
        return Check("tracking secret", True, "from LEADFLOW_TRACKING_SECRET")
    path = settings.tracking_secret_file
    if path.exists():
        return Check("tracking secret", True, f"generated key in {path}")
    return Check(
        "tracking secret", False,
        f"no LEADFLOW_TRACKING_SECRET and no key in {path} yet (one is generated on first use)",
        "set LEADFLOW_TRACKING_SECRET, the same on every machine that sends or tracks emails",
        severity="warning",
    )
