"""The one settings object: every knob of leadflow, from the environment (LEADFLOW_*) or `.env`.

Secrets are `SecretStr` so they never print; production credentials can instead be named by
reference (`*_secret_block`), resolved from a Prefect Secret block at call time.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(".leadflow")
# The most leads one generate-leads run may ask for (a typed bound on the flow's and the CLI's
# max_results: the sources are fetched page by page and the chunks streamed, so memory does not
# grow with it).
MAX_RESULTS = 1_000_000
# The longest industry or location a generate-leads run may search for (the flow's and the
# CLI's bound).
MAX_SEARCH_TEXT = 200
LEAD_SOURCES = ("apollo", "google_places", "pdl")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LEADFLOW_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    # --- storage -------------------------------------------------------------------------
    database_url: str = Field(
        default=f"sqlite:///{DATA_DIR / 'leadflow.db'}",
        description="SQLAlchemy URL; postgresql+psycopg://... selects PostgreSQL.",
    )
    db_pool_size: int = 10

    # --- external APIs (base URLs point at the sandbox in the demo and tests) --------------
    apollo_base_url: str = "https://api.apollo.io/api/v1"
    google_places_base_url: str = "https://places.googleapis.com/v1"
    pdl_base_url: str = "https://api.peopledatalabs.com/v5"
    hunter_base_url: str = "https://api.hunter.io/v2"
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"

    apollo_api_key: SecretStr | None = None
    google_places_api_key: SecretStr | None = None
    pdl_api_key: SecretStr | None = None
    hunter_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    # Names of Prefect Secret blocks to read a key from when the key itself is not set.
    apollo_secret_block: str | None = None
    google_places_secret_block: str | None = None
    pdl_secret_block: str | None = None
    hunter_secret_block: str | None = None
    openai_secret_block: str | None = None

    # Order in which sources are tried when one is exhausted or keeps failing.
    source_fallback_order: list[str] = ["apollo", "google_places", "pdl"]

    # --- HTTP behaviour ----------------------------------------------------------------
    http_timeout_s: float = 10.0
    http_connect_timeout_s: float = 3.0
    http_max_attempts: int = Field(default=4, ge=1)
    http_backoff_base_s: float = 0.5
    http_backoff_max_s: float = 30.0
    http_concurrency: int = 32
    # Prefect task retries (a whole chunk failing): attempts after the first, and the first delay,
    # doubled each time, with jitter.
    task_retries: int = 2
    task_retry_delay_s: float = 2.0
    # Hunter answers 202 while a verification is still running: poll this often, this many times.
    hunter_verify_max_polls: int = 5
    hunter_verify_poll_s: float = 2.0
    # Read timeout of Hunter's email finder and verifier, which check mail servers while the
    # request waits: the finder up to its max_duration (10 s by default), the verifier ~20 s
    # before it answers 202. Shorter, a slow check times out and is started all over again.
    hunter_slow_timeout_s: float = 30.0
    # Concurrent Hunter requests during enrichment.
    enrich_concurrency: int = 32

    # --- website analysis ----------------------------------------------------------------
    site_timeout_s: float = 8.0
    site_max_bytes: int = 2_000_000
    site_max_redirects: int = 5
    site_cache_days: int = 30
    # Networks the fetcher may reach although they are private/loopback (the sandbox).
    site_allow_networks: list[str] = []
    # Host patterns routed to a fixed address instead of DNS, e.g. {"*.example": "127.0.0.1:8799"}.
    site_host_overrides: dict[str, str] = {}
    parse_workers: int = 2

    # --- outreach ------------------------------------------------------------------------
    # Emails go to this folder as .eml files when no SMTP provider is configured (the default).
    outbox_dir: Path = DATA_DIR / "outbox"
    # SMTP passwords by provider reference, e.g. LEADFLOW_SMTP_PASSWORDS__GMAIL_MAIN=...; a
    # provider's `password_ref` names a key here or a Prefect Secret block.
    smtp_passwords: dict[str, SecretStr] = {}
    smtp_timeout_s: float = 15.0
    # CA bundle (PEM) trusted for SMTP TLS instead of the system store, e.g. a private relay's
    # or a test server's self-signed certificate. Certificates are always verified.
    smtp_ca_file: Path | None = None
    send_batch_size: int = 50
    # A claimed email not finished within this time goes to `review` (never resent blindly).
    send_claim_timeout_s: float = 600.0
    # A batch being sent checks its messages not sent yet again (claims, suppressions, stopped
    # sequences) once this long has passed since its last check.
    send_recheck_after_s: float = Field(default=1.0, ge=0)
    send_max_attempts: int = 5
    send_retry_base_s: float = 60.0
    ai_timeout_s: float = 10.0
    ai_max_opening_chars: int = 400
    # Attempts after the first for one AI opening (the SDK honours Retry-After); kept small
    # because a failed opening just falls back to the template's.
    ai_max_retries: int = 1
    ai_concurrency: int = 8
    # Seeds the `openai` plan in api_configs (edit the row to change it): USD per 1,000
    # tokens (a blend of gpt-4o-mini's input and output prices) and tokens per month.
    openai_price_per_1k_tokens: float = 0.0003
    openai_monthly_token_limit: int = 5_000_000
    # The sender a campaign gets when it names none (demo-safe: a reserved .example domain).
    sender_name: str = "Sam at Booknex"
    sender_email: str = "sam@booknex.example"
    sender_postal_address: str = "Booknex Ltd, 100 Example Street, Springfield, IL 62701, USA"

    # --- tracking app --------------------------------------------------------------------
    tracking_host: str = "127.0.0.1"
    tracking_port: int = 8800
    # Public base URL the emails' pixel, click and unsubscribe links point at.
    tracking_base_url: str = "http://127.0.0.1:8800"
    # HMAC key of tracking tokens; when unset, one is generated once into tracking_secret_file.
    tracking_secret: SecretStr | None = None
    tracking_secret_file: Path = DATA_DIR / "tracking.key"
    # Proxies (CIDRs) whose X-Forwarded-For is believed; from anyone else it is ignored.
    tracking_trusted_proxies: list[str] = []
    # Machine-event rules (bot_rules.json shape); None = tracking_app/bot_rules.json.
    tracking_bot_rules_file: Path | None = None
    # Group commit: while fewer than `tracking_commit_concurrency` batches are committing, what
    # is waiting (up to max_batch) goes as the next batch, once its oldest event has waited
    # the window (0: no timer; batches grow with the load while the others commit).
    tracking_commit_window_ms: float = 0.0
    tracking_commit_max_batch: int = 500
    # Batches committing at once (each on its own connection; SQLite commits one at a time).
    tracking_commit_concurrency: int = 3
    # A request whose event is not committed within this time gets 503.
    tracking_commit_timeout_s: float = 10.0
    # Derived figures of touched emails are refreshed at most this often.
    tracking_refresh_interval_s: float = 2.0

    # --- deployments -------------------------------------------------------------------
    # Time zone of every deployment schedule (daily 9:00, hourly, every 6 hours).
    schedule_timezone: str = "UTC"

    # --- pipeline ------------------------------------------------------------------------
    batch_size: int = Field(default=1000, ge=1)
    # Chunks whose network stages (enrichment, website analysis) may run at once: the slowest
    # site of one chunk (up to site_timeout_s) then overlaps the work of the others.
    pipeline_depth: int = Field(default=3, ge=1)
    score_hot_threshold: int = 70
    score_warm_threshold: int = 40
    dedupe_name_threshold: float = Field(default=88.0, ge=0, le=100)
    # A running batch with no sign of life for this long is marked failed by the next
    # lead-generation or CSV-import run: its process was killed outright (SIGKILL, out of
    # memory, a reboot). A live run's heartbeat beats every quarter of this (at most every 10
    # minutes) from a thread, and with each chunk loaded.
    batch_stale_after_s: float = Field(default=7200.0, gt=0)

    @field_validator("schedule_timezone")
    @classmethod
    def _iana_zone(cls, value: str) -> str:
        """Refused here, as Prefect refuses it (an IANA name of the tz database), rather than
        by `leadflow serve` with a traceback or by the server on `leadflow deploy`."""
        from zoneinfo import available_timezones

        # The default needs no look-up: listing the zones reads the tz database (~50 ms, at
        # every start of the CLI).
        if value != "UTC" and value not in available_timezones():
            raise ValueError("not an IANA time zone name (e.g. UTC, America/New_York)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Settings that are each well-typed but wrong together, refused when loaded (before
        a run spends API credits and fails at the scoring step)."""
        if not 0 <= self.score_warm_threshold < self.score_hot_threshold <= 100:
            raise ValueError(
                "the tier thresholds need 0 <= LEADFLOW_SCORE_WARM_THRESHOLD < "
                "LEADFLOW_SCORE_HOT_THRESHOLD <= 100")
        unknown = [s for s in self.source_fallback_order if s not in LEAD_SOURCES]
        if unknown:
            raise ValueError(f"LEADFLOW_SOURCE_FALLBACK_ORDER names unknown sources {unknown} "
                             f"(known: {', '.join(LEAD_SOURCES)})")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """As pydantic's, with the database URL's password masked (the SecretStr fields mask
        themselves), so that settings printed or logged show no secret."""
        for name, value in super().__repr_args__():
            yield name, _masked_url(value) if name == "database_url" else value


def _masked_url(url: str) -> str:
    """A database URL with its password masked; a value that is no URL, wholly masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        return "***"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def settings_errors(exc: ValidationError) -> list[str]:
    """What is wrong with the settings, one line per error, naming the environment variable
    and never the value given (it may be a secret)."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        where = "LEADFLOW_" + "__".join(str(p) for p in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if error["loc"] else message)
    return lines


def reset_settings_cache() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
