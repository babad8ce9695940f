"""The tracking app's structured logs: JSON lines with extra fields, tokens and secrets masked."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from leadflow.tokens import TrackingToken, sign
from tracking_app.logs import JsonFormatter, redact


def test_a_record_is_one_json_line_with_its_extra_fields() -> None:
    record = logging.LogRecord("leadflow.tracking", logging.WARNING, __file__, 1,
                               "batch of %d not committed", (12,), None)
    record.batch = 12
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning" and entry["logger"] == "leadflow.tracking"
    assert entry["message"] == "batch of 12 not committed" and entry["batch"] == 12
    assert entry["time"].endswith("+00:00")


def test_tokens_and_secrets_never_reach_the_log() -> None:
    token = sign(TrackingToken("click", 42, 1), b"k" * 32)
    line = redact(f"GET /c/{token} password=hunter2 api_key: sk-live-123")
    assert token not in line and "hunter2" not in line and "sk-live-123" not in line
    assert "c42-1.[redacted]" in line


@pytest.mark.parametrize("text", [
    "smtp_password=hunter2",
    "LEADFLOW_TRACKING_SECRET=hunter2",
    'settings {"password": "hunter2", "user": "app"}',
    "Authorization: Bearer hunter2",
    "postgresql://app:hun/ter2@db:5432/x",
])
def test_prefixed_quoted_and_bearer_secrets_are_masked(text: str) -> None:
    line = redact(text)
    assert "hunter2" not in line and "ter2" not in line and "[redacted]" in line


def test_an_exception_is_logged_with_its_masked_message_and_traceback() -> None:
    token = sign(TrackingToken("open", 7), b"k" * 32)
    try:
        raise TypeError(f"cannot compare for /o/{token}.gif on postgresql://app:s3cret@db/x")
    except TypeError:
        record = logging.LogRecord("leadflow.tracking", logging.ERROR, __file__, 1,
                                   "tracking writer failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["error"] == "TypeError"
    assert "Traceback" in entry["traceback"] and "in test_an_exception" in entry["traceback"]
    assert "TypeError: cannot compare for /o/o7.[redacted].gif" in entry["traceback"]
    assert "postgresql://app:[redacted]@db/x" in entry["traceback"]
    assert token not in entry["traceback"] and "s3cret" not in entry["traceback"]
