"""Structured logs of the tracking app: one JSON object per line (time, level, logger, message
and any `extra=` fields), for log shippers. Tracking tokens and anything that looks like a
secret are masked before a record is written."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# A token's signature part (see leadflow/tokens.py), and key=value secrets in messages.
_TOKEN = re.compile(r"\b([ocu][0-9]{1,18}(?:-[0-9]{1,4})?)\.[A-Za-z0-9_-]{22}\b")
# A name may be prefixed or quoted (smtp_password=, LEADFLOW_TRACKING_SECRET=, "password": "x").
_SECRET = re.compile(r"(?i)\b(\w*(?:password|secret|api[_-]?key|token|authorization)\w*\"?)"
                     r"(\s*[=:]\s*\"?)((?:bearer\s+|basic\s+)?[^\s\",}]+)")
# The password of a URL (postgresql://user:password@host/...), a "/" in it included.
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@\s]+@")
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message"}  # uvicorn's ANSI-coloured copy of the message


def redact(text: str) -> str:
    text = _TOKEN.sub(r"\1.[redacted]", text)
    text = _URL_PASSWORD.sub(r"\1[redacted]@", text)
    return _SECRET.sub(r"\1\2[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
            # The traceback (its last line is the message), masked like the message.
            entry["traceback"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the app's own loggers and uvicorn's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("leadflow", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's `log_config`: the same JSON lines for its own loggers."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "loggers": {name: {"handlers": ["stderr"], "level": "INFO", "propagate": False}
                    for name in ("leadflow", "uvicorn", "uvicorn.error", "uvicorn.access")},
    }
