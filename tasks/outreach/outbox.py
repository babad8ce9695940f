"""The outbox: where emails go on the embedded default, with no SMTP provider configured.

Each message becomes one standard `.eml` file (RFC 5322, CRLF line ends) that any mail client
opens, named after its Message-ID. A file is written whole under a temporary name and then
linked into place, so a reader never sees half a message, and an email is never written twice
(a retried send finds its file there)."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


def eml_name(message_id: str) -> str:
    """`<lf.1.2.1.ab@example.com>` -> `lf.1.2.1.ab@example.com.eml` (no path characters)."""
    core = _UNSAFE.sub("_", message_id.strip().strip("<>")).lstrip(".")
    if not core:
        raise ValueError("empty Message-ID")
    return f"{core[:200]}.eml"


def write_eml(outbox_dir: Path, message_id: str, message: bytes) -> tuple[Path, bool]:
    """Write the message to the outbox; returns its path and whether it was written now (False:
    a file for this Message-ID was already there and is left as it is)."""
    outbox_dir.mkdir(parents=True, exist_ok=True)
    path = outbox_dir / eml_name(message_id)
    if path.exists():
        return path, False
    tmp = outbox_dir / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(message)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if the name exists: never replaces a written message
        except FileExistsError:
            return path, False
    finally:
        tmp.unlink(missing_ok=True)
    return path, True
