"""A scripted HTTP server on loopback for the clients' protocol tests: each path answers from a
queue of canned replies (status, body, headers, delay) and every request is recorded. Real
sockets, deterministic faults; the sandbox tests cover the emulated APIs end to end."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from leadflow.settings import Settings

PAYLOADS = Path(__file__).resolve().parent.parent / "fixtures" / "payloads"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> as is; None -> empty
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class ScriptedServer:
    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                reply = server._next(parts.path, Recorded(
                    self.command, parts.path, parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()}, body,
                ))
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if isinstance(reply.body, bytes):
                    data = reply.body
                elif reply.body is None:
                    data = b""
                else:
                    data = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _serve
            do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _next(self, path: str, rec: Recorded) -> Reply:
        with self._lock:
            self.requests.append(rec)
            queue = self.scripts.get(path)
            if not queue:
                return Reply(404, {"error": f"no script for {path}"})
            # The last reply repeats once the queue is down to it.
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self.scripts[path] = list(replies)

    def hits(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def reset(self) -> None:
        with self._lock:
            self.scripts.clear()
            self.requests.clear()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def _scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture()
def scripted(_scripted_server: ScriptedServer) -> Iterator[ScriptedServer]:
    _scripted_server.reset()
    yield _scripted_server
    _scripted_server.reset()


SECRET = "sekret-KEY-0123456789"


def fast_settings(base: str, **overrides: Any) -> Settings:
    """Settings pointing every API at `base` with short timeouts and tiny backoff."""
    values: dict[str, Any] = dict(
        apollo_base_url=f"{base}/apollo/api/v1",
        google_places_base_url=f"{base}/google_places/v1",
        pdl_base_url=f"{base}/pdl/v5",
        hunter_base_url=f"{base}/hunter/v2",
        apollo_api_key=SECRET,
        google_places_api_key=SECRET,
        pdl_api_key=SECRET,
        hunter_api_key=SECRET,
        http_max_attempts=3,
        http_backoff_base_s=0.01,
        http_backoff_max_s=5.0,
        http_timeout_s=0.4,
        http_connect_timeout_s=0.4,
        http_concurrency=8,
        hunter_verify_max_polls=3,
        hunter_verify_poll_s=0.01,
    )
    values.update(overrides)
    return Settings(**values)
