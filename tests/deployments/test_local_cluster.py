"""The local cluster's client of the Prefect REST API, against a stand-in server on loopback
that answers as Prefect's does when its database is busy."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deployments.local_cluster import API_ATTEMPTS, LocalCluster
from tests.conftest import free_port

calls: list[str] = []


async def busy_twice(request: Request) -> Response:
    calls.append(request.url.path)
    if len(calls) <= 2:
        return JSONResponse({"exception_message": "database is locked"}, status_code=503)
    return JSONResponse({"id": "run-1"}, status_code=201)


async def always_busy(request: Request) -> Response:
    calls.append(request.url.path)
    return JSONResponse({"exception_message": "database is locked"}, status_code=503,
                        headers={"retry-after": "0"})


@pytest.fixture(scope="module")
def api_port() -> Iterator[int]:
    port = free_port()
    app = Starlette(routes=[Route("/api/busy-twice", busy_twice, methods=["POST"]),
                            Route("/api/always-busy", always_busy, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(timeout=5)


def test_a_request_the_busy_server_refused_is_sent_again(api_port: int, tmp_path: Path) -> None:
    calls.clear()
    cluster = LocalCluster(home=tmp_path, port=api_port)
    assert cluster._api("POST", "/busy-twice", json={}) == {"id": "run-1"}
    assert calls == ["/api/busy-twice"] * 3


def test_a_server_that_stays_busy_is_an_error_after_a_few_attempts(api_port: int,
                                                                   tmp_path: Path) -> None:
    calls.clear()
    cluster = LocalCluster(home=tmp_path, port=api_port)
    with pytest.raises(httpx.HTTPStatusError, match="503"):
        cluster._api("POST", "/always-busy", json={})
    assert len(calls) == API_ATTEMPTS
