"""Fixtures for `leadflow doctor`: settings built explicitly (not from whatever the environment
holds), SMTP provider rows, and a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from pydantic import SecretStr

from leadflow.settings import Settings
from models.db import session_scope
from models.emails import SmtpProvider
from tests.conftest import free_port

SANDBOX = "http://127.0.0.1:8799"
# Never a real secret: the tests check it is printed nowhere.
SECRET = "pw-must-never-show-9f3a"


@pytest.fixture()
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings of a healthy sandbox set-up, with `overrides` on top."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            database_url=f"sqlite:///{tmp_path / 'missing.db'}",
            outbox_dir=tmp_path / "outbox",
            tracking_secret=SecretStr("t" * 32),
            tracking_secret_file=tmp_path / "tracking.key",
            tracking_base_url="http://127.0.0.1:8800",
            source_fallback_order=["apollo", "google_places", "pdl"],
            smtp_passwords={},
        )
        for source, path in (("apollo", "apollo/api/v1"), ("google_places", "google_places/v1"),
                             ("pdl", "pdl/v5"), ("hunter", "hunter/v2"), ("openai", "openai/v1")):
            values[f"{source}_base_url"] = f"{SANDBOX}/{path}"
            values[f"{source}_api_key"] = SecretStr(f"sandbox-{source}-key")
            values[f"{source}_secret_block"] = None
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture()
def add_provider() -> Callable[..., None]:
    def add(url: str, name: str, host: str, port: int, **extra: Any) -> None:
        with session_scope(url) as s:
            s.add(SmtpProvider(name=name, host=host, port=port, **extra))

    return add


@pytest.fixture()
def smtp_server() -> Iterator[Controller]:
    """A real SMTP server on loopback that accepts and discards mail (no AUTH, no STARTTLS)."""
    controller = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
