"""Tracking tokens' key: a configured secret too short to resist forgery is refused, by the
signing code and by `leadflow tracking` before it serves anything; the generated key works."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadflow import tokens
from leadflow.settings import reset_settings_cache
from tests.conftest import ROOT


@pytest.fixture()
def secret_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("LEADFLOW_TRACKING_SECRET_FILE", str(tmp_path / "tracking.key"))
    monkeypatch.delenv("LEADFLOW_TRACKING_SECRET", raising=False)
    reset_settings_cache()
    yield monkeypatch
    reset_settings_cache()


@pytest.mark.parametrize("secret", ["", "   ", "short-secret-15"])
def test_a_short_secret_is_refused_and_never_shown(secret_env: pytest.MonkeyPatch,
                                                   secret: str) -> None:
    secret_env.setenv("LEADFLOW_TRACKING_SECRET", secret)
    reset_settings_cache()
    with pytest.raises(tokens.TrackingSecretError, match="too short") as caught:
        tokens.open_url(1)
    assert secret.strip() == "" or secret not in str(caught.value)


def test_a_secret_of_sixteen_characters_signs_and_verifies(
        secret_env: pytest.MonkeyPatch) -> None:
    secret_env.setenv("LEADFLOW_TRACKING_SECRET", "s" * 16)
    reset_settings_cache()
    token = tokens.sign(tokens.TrackingToken("open", 5))
    assert tokens.verify(token) == tokens.TrackingToken("open", 5, None)
    assert tokens.verify(token, b"another-key-0123456789") is None


def test_a_token_with_anything_appended_does_not_verify(secret_env: pytest.MonkeyPatch) -> None:
    secret_env.setenv("LEADFLOW_TRACKING_SECRET", "s" * 16)
    reset_settings_cache()
    for token in (tokens.sign(tokens.TrackingToken("open", 5)),
                  tokens.sign(tokens.TrackingToken("click", 5, 1))):
        assert tokens.verify(token) is not None
        for suffix in ("\n", "\r\n", " ", "A"):
            assert tokens.verify(token + suffix) is None, repr(suffix)


def test_without_a_secret_a_private_key_file_is_generated_once(
        secret_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = tokens.sign(tokens.TrackingToken("click", 9, 2))
    key_file = tmp_path / "tracking.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(key_file.read_text().strip()) >= tokens.MIN_SECRET_LENGTH
    assert tokens.verify(token) == tokens.TrackingToken("click", 9, 2)


def test_leadflow_tracking_refuses_to_start_with_a_short_secret(tmp_path: Path) -> None:
    env = {**os.environ, "LEADFLOW_TRACKING_SECRET": "tiny-secret",
           "LEADFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    cli = Path(sys.executable).with_name("leadflow")
    done = subprocess.run([str(cli), "tracking", "--port", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "LEADFLOW_TRACKING_SECRET is too short" in done.stderr
    assert "tiny-secret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
