"""Oversized or malformed requests get a clean 4xx from the app or its server, never a 500,
and write nothing."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest

from leadflow import tokens
from tests.tracking_app.conftest import Outreach, RunningApp, event_count, path_of


def raw_request(app: RunningApp, data: bytes) -> bytes:
    """Send bytes as they are (no client library tidying them) and read the status line."""
    host, port = app.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        response = b""
        while b"\r\n" not in response:
            chunk = sock.recv(4096)
            if not chunk:
                break
            response += chunk
    return response.split(b"\r\n", 1)[0]


def test_oversized_paths_headers_and_bodies_get_a_clean_4xx_and_write_nothing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    pixel = path_of(tokens.open_url(outreach.email_ids[0]))
    base = app_pg.base_url
    assert httpx.get(f"{base}/o/{'A' * 3000}.gif", timeout=10).status_code == 414
    assert httpx.get(f"{base}{pixel}?{'q=1&' * 400}", timeout=10).status_code == 414
    assert httpx.get(base + pixel, headers={"x-big": "v" * 9000}, timeout=10).status_code == 431
    many = {f"x-h{i}": "1" for i in range(100)}
    assert httpx.get(base + pixel, headers=many, timeout=10).status_code == 431
    # Beyond what the server's HTTP parser holds for a request head: refused by the parser
    # (400) or, when the head arrived in one read, by the app (431).
    assert httpx.get(base + pixel, headers={"x-huge": "v" * 20_000},
                     timeout=10).status_code in (400, 431)
    unsub = path_of(tokens.unsubscribe_url(outreach.email_ids[0]))
    r = httpx.post(base + unsub, content=b"List-Unsubscribe=One-Click" + b"&x=1" * 2000,
                   headers={"content-type": "application/x-www-form-urlencoded"}, timeout=10)
    assert r.status_code == 413
    assert event_count(pg_clean) == 0


def assert_nothing_recorded(app: RunningApp, db_url: str) -> None:
    time.sleep(0.5)  # a hit the app had taken would be committed by now
    app.wait_idle()
    assert event_count(db_url) == 0


def test_malformed_requests_get_a_400_and_write_nothing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    pixel = path_of(tokens.open_url(outreach.email_ids[0])).encode()
    cases = [
        b"GET " + pixel + b" HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET " + pixel + b" HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n",
        b"GET " + pixel + b" HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x00b\r\n\r\n",
        b"GET " + pixel + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"NOT-HTTP\r\n\r\n",
        b"GET " + pixel + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    for data in cases:
        status = raw_request(app_pg, data)
        assert status.startswith(b"HTTP/1.1 4"), (data, status)
    assert_nothing_recorded(app_pg, pg_clean)


def test_a_pixel_request_with_a_body_gets_a_400_and_writes_nothing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    pixel = path_of(tokens.open_url(outreach.email_ids[0])).encode()
    for body_header in (b"Content-Length: 2", b"Transfer-Encoding: chunked"):
        data = (b"GET " + pixel + b" HTTP/1.1\r\nHost: x\r\n" + body_header + b"\r\n\r\n"
                + (b"ok" if body_header.startswith(b"Content") else b"2\r\nok\r\n0\r\n\r\n"))
        assert raw_request(app_pg, data).startswith(b"HTTP/1.1 400"), body_header
    assert_nothing_recorded(app_pg, pg_clean)


def test_a_malformed_body_on_a_pixel_request_logs_no_error(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server answers 400 to a chunked body it cannot parse; the route's own 400 then has
    no connection to go to. That is no application error: any client could otherwise fill
    the logs with a traceback per request."""
    pixel = path_of(tokens.open_url(outreach.email_ids[0])).encode()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            status = raw_request(app_pg, b"GET " + pixel + b" HTTP/1.1\r\nHost: x\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
            assert status == b"HTTP/1.1 400 Bad Request"
        assert_nothing_recorded(app_pg, pg_clean)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_unprintable_user_agent_characters_are_dropped_before_storing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    from tests.tracking_app.conftest import events

    pixel = path_of(tokens.open_url(outreach.email_ids[0])).encode()
    status = raw_request(
        app_pg, b"GET " + pixel + b" HTTP/1.1\r\nHost: x\r\nUser-Agent: Mail\xe9\x7fApp/1 "
        + b"x" * 400 + b"\r\nConnection: close\r\n\r\n")
    assert status == b"HTTP/1.1 200 OK"
    [event] = events(pg_clean)
    assert event.user_agent is not None
    assert event.user_agent.startswith("Mail\xe9App/1 ") and len(event.user_agent) == 300
