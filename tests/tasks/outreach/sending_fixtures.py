"""Fixtures of the sending tests (loaded with `pytest_plugins`): real aiosmtpd servers on
loopback with AUTH, STARTTLS or implicit TLS and scripted faults, settings that trust the test
certificate, a PostgreSQL database with builders, and a clock tests can move."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.tasks.outreach.mailserver import (
    PASSWORD_REF,
    SMTP_PASSWORD,
    T0,
    Outreach,
    RecordingHandler,
    Script,
    SmtpServer,
    TlsFiles,
    authenticator,
    make_self_signed,
)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture()
def smtp_servers(tls_files: TlsFiles) -> Iterator[Callable[..., SmtpServer]]:
    """Start aiosmtpd servers: `start(security="starttls"|"tls"|"none", auth=True,
    script=None, smtputf8=False)`; all are stopped after the test."""
    from tests.conftest import free_port

    started: list[Controller] = []

    def start(security: str = "starttls", auth: bool = True,
              script: Script | None = None, smtputf8: bool = False) -> SmtpServer:
        handler = RecordingHandler(script)
        port = free_port()
        kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": port,
                                  "server_hostname": "localhost", "ident": "leadflow-test",
                                  "enable_SMTPUTF8": smtputf8}
        if auth:
            kwargs.update(authenticator=authenticator, auth_required=True)
        if security == "starttls":
            kwargs.update(tls_context=tls_files.server_context(), require_starttls=True)
        elif security == "tls":
            # aiosmtpd only counts STARTTLS as TLS, so AUTH is offered without requiring TLS
            # (this connection is TLS from its first byte) and without being required (which
            # aiosmtpd warns against); the tests check the client did authenticate.
            kwargs.update(ssl_context=tls_files.server_context(), auth_require_tls=False,
                          auth_required=False)
        else:
            kwargs.update(auth_require_tls=False)
        controller = Controller(handler, **kwargs)
        controller.start()
        started.append(controller)
        return SmtpServer(controller, handler, port, security)

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture()
def send_env(tls_files: TlsFiles, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings for sending tests: the test certificate trusted, the relay password under
    its reference, a private outbox, fixed tracking key; yields the outbox folder."""
    from leadflow.settings import reset_settings_cache

    outbox = tmp_path / "outbox"
    for key, value in {
        "LEADFLOW_SMTP_CA_FILE": str(tls_files.cert),
        f"LEADFLOW_SMTP_PASSWORDS__{PASSWORD_REF.upper()}": SMTP_PASSWORD,
        "LEADFLOW_OUTBOX_DIR": str(outbox),
        "LEADFLOW_TRACKING_SECRET": "sending-tests-tracking-secret-0123456789",
        "LEADFLOW_TRACKING_BASE_URL": "https://t.example.test",
        "LEADFLOW_SMTP_TIMEOUT_S": "5",
        "LEADFLOW_SEND_RETRY_BASE_S": "60",
        "LEADFLOW_SEND_MAX_ATTEMPTS": "3",
        "LEADFLOW_SEND_CLAIM_TIMEOUT_S": "600",
        "LEADFLOW_SEND_BATCH_SIZE": "10",
    }.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    yield outbox
    reset_settings_cache()


@pytest.fixture()
def outreach_pg(pg_clean: str, send_env: Path) -> Outreach:
    return Outreach(pg_clean)


@pytest.fixture()
def send_clock() -> Callable[..., Callable[[], dt.datetime]]:
    """`send_clock(start)`: a now_fn that returns `start` (tests move it with `.advance`)."""
    class Clock:
        def __init__(self, start: dt.datetime = T0) -> None:
            self.now = start

        def __call__(self) -> dt.datetime:
            return self.now

        def advance(self, **delta: float) -> None:
            self.now += dt.timedelta(**delta)

    return Clock
