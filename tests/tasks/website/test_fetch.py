"""The SSRF-safe fetcher over real HTTP against a small local server: redirects re-checked at
every hop, internal addresses refused, deadline, byte cap and content-type rules."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from leadflow.settings import Settings
from tasks.website.fetch import _request, fetch_site, make_client, resolve_target
from tests.conftest import free_port

PAGE = b"<!DOCTYPE html><html><head><title>ok</title></head><body><p>Book now</p></body></html>"


async def page(request: Request) -> Response:
    body = PAGE.replace(b"ok", request.headers.get("host", "").encode())
    proto = request.headers.get("x-forwarded-proto", "")
    return Response(body, headers={"content-type": "text/html", "x-proto-seen": proto})


async def never_ends(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"<html><body>"
        for _ in range(600):
            await asyncio.sleep(0.1)
            yield b"<p>still here</p>"

    return StreamingResponse(body(), media_type="text/html")


async def huge(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"<html><body>"
        for _ in range(100):
            yield b"x" * 10_000

    return StreamingResponse(body(), media_type="text/html")


# 64 MB of HTML that gzips to about 64 KB: one network read for the client.
BOMB = gzip.compress(b"<html><body>" + b" " * 64_000_000, compresslevel=9)


async def gzip_bomb(request: Request) -> Response:
    return Response(BOMB, headers={"content-type": "text/html", "content-encoding": "gzip"})


async def gzipped(request: Request) -> Response:
    return Response(gzip.compress(PAGE), headers={"content-type": "text/html",
                                                  "content-encoding": "gzip"})


def deflated(request: Request) -> Response:
    """`deflate` as the standard has it (zlib-wrapped) or as some servers send it (raw)."""
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS if request.query_params.get("raw")
                              else zlib.MAX_WBITS)
    return Response(packer.compress(PAGE) + packer.flush(),
                    headers={"content-type": "text/html", "content-encoding": "deflate"})


def routes() -> list[Route]:
    return [
        Route("/page", page),
        Route("/hop1", lambda r: RedirectResponse("http://other.shop.test/hop2", 302)),
        Route("/hop2", lambda r: RedirectResponse("/page", 301)),
        Route("/loop", lambda r: RedirectResponse("/loop", 302)),
        Route("/to-metadata", lambda r: RedirectResponse(
            "http://169.254.169.254/latest/meta-data/", 302)),
        Route("/to-localhost", lambda r: RedirectResponse("http://localhost/page", 302)),
        Route("/never-ends", never_ends),
        Route("/huge", huge),
        Route("/gzip-bomb", gzip_bomb),
        Route("/gzipped", gzipped),
        Route("/deflated", deflated),
        Route("/pdf", lambda r: Response(b"%PDF-1.4", media_type="application/pdf")),
        Route("/error", lambda r: HTMLResponse("<h1>boom</h1>", 500)),
    ]


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(Starlette(routes=routes()), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(timeout=5)


def settings_for(port: int, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "site_host_overrides": {"*.shop.test": f"127.0.0.1:{port}"},
        "site_allow_networks": ["127.0.0.1/32"],
        "site_timeout_s": 5.0,
        "site_max_bytes": 2_000_000,
        "site_max_redirects": 5,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def fetch(url: str, settings: Settings) -> object:
    async def run() -> object:
        async with make_client(settings) as client:
            return await fetch_site(url, client, settings)

    return asyncio.run(run())


def test_page_fetched_through_host_override_keeping_scheme_and_host(server_port: int) -> None:
    result = fetch("https://www.shop.test/page", settings_for(server_port))
    assert result.error is None and result.status == 200  # type: ignore[attr-defined]
    assert b"<title>www.shop.test</title>" in result.body  # type: ignore[attr-defined]
    assert result.final_url == "https://www.shop.test/page"  # type: ignore[attr-defined]


def test_redirects_are_followed_and_each_hop_recorded(server_port: int) -> None:
    result = fetch("http://www.shop.test/hop1", settings_for(server_port))
    assert result.error is None  # type: ignore[attr-defined]
    assert result.redirects == [  # type: ignore[attr-defined]
        "http://other.shop.test/hop2", "http://other.shop.test/page"]
    assert result.final_url == "http://other.shop.test/page"  # type: ignore[attr-defined]
    assert b"other.shop.test" in result.body  # type: ignore[attr-defined]


def test_redirect_to_the_metadata_address_is_refused(server_port: int) -> None:
    result = fetch("http://www.shop.test/to-metadata", settings_for(server_port))
    assert result.error.startswith("refused:")  # type: ignore[attr-defined]
    assert "169.254.169.254" in result.error  # type: ignore[attr-defined]
    assert result.body == b""  # type: ignore[attr-defined]


def test_redirect_to_localhost_is_refused_even_with_loopback_allowed(server_port: int) -> None:
    settings = settings_for(server_port, site_host_overrides={"*": f"127.0.0.1:{server_port}"})
    result = fetch("http://www.shop.test/to-localhost", settings)
    assert result.error.startswith("refused:")  # type: ignore[attr-defined]


def test_too_many_redirects_is_an_error(server_port: int) -> None:
    result = fetch("http://www.shop.test/loop", settings_for(server_port, site_max_redirects=3))
    assert result.error.startswith("too_many_redirects")  # type: ignore[attr-defined]
    assert len(result.redirects) == 4  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2/", "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/", "http://localhost/", "http://[::ffff:127.0.0.1]/", "http://2130706434/",
        "http://0x7f.2/", "http://012.1/", "http://192.168.1.1/", "http://[fe80::1]/", "http://0.0.0.0/",
        "http://224.0.0.1/", "http://foo.localhost/", "ftp://shop.test/", "file:///etc/passwd",
        "http://user:pw@www.shop.test/", "http://www.example.com:8080/",
        "http://93.184.216.34:22/", "http://[fec0::1]/",
    ],
)
def test_forbidden_urls_are_refused_without_any_connection_attempt(url: str) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, html="<html></html>")

    # Overrides admit everything and loopback is allowed: literal IPs and local names must still
    # be refused on their own merits.
    settings = Settings(site_host_overrides={"www.shop.test": "127.0.0.1:9"},
                        site_allow_networks=["127.0.0.1/32"])

    async def run() -> object:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await fetch_site(url, client, settings)

    result = asyncio.run(run())
    assert result.error and result.error.split(":")[0] in ("refused", "invalid_url")  # type: ignore[attr-defined]
    assert calls == []


@pytest.mark.parametrize(
    "url",
    ["http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",  # fullwidth localhost
     "http://shop\uff0e\uff4c\uff4f\uff43\uff41\uff4c/",  # shop．ｌｏｃａｌ
     "http://\uff11\uff16\uff19\uff0e\uff12\uff15\uff14\uff0e\uff11\uff16\uff19\uff0e"
     "\uff12\uff15\uff14/"],  # １６９．２５４．１６９．２５４
)
@pytest.mark.parametrize("overrides", [{}, {"*": "127.0.0.1:9"}])
def test_names_and_ips_in_unicode_lookalike_forms_are_checked_as_what_they_resolve_to(
    url: str, overrides: dict[str, str]
) -> None:
    """IDNA maps fullwidth letters, digits and dots to ASCII: the local-name and literal-IP rules
    apply to the name that is looked up and sent, not to how the URL spelled it."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, html="<html></html>")

    settings = Settings(site_host_overrides=overrides, site_allow_networks=["127.0.0.1/32"])

    async def run() -> object:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await fetch_site(url, client, settings)

    result = asyncio.run(run())
    assert result.error and result.error.startswith("refused:")  # type: ignore[attr-defined]
    assert calls == []


def test_literal_ip_urls_bypass_the_host_overrides() -> None:
    settings = Settings(site_host_overrides={"*": "127.0.0.1:9"}, site_allow_networks=[])

    async def run(url: str) -> object:
        return await resolve_target(url, settings)

    with pytest.raises(Exception, match="refused"):
        asyncio.run(run("http://169.254.169.254/"))
    public = asyncio.run(run("http://93.184.216.34/"))  # no connection made: resolution only
    assert (public.ip, public.port) == ("93.184.216.34", 80)  # type: ignore[attr-defined]


def test_the_allow_list_admits_an_address_not_every_port_on_it(server_port: int) -> None:
    """With loopback allowed (the sandbox set-up), a URL naming a loopback port directly, in
    any spelling, is still refused: only the host overrides reach the sandbox's port."""
    settings = settings_for(server_port)
    for url in (f"http://127.0.0.1:{server_port}/page", "http://127.0.0.1:5432/",
                f"http://2130706433:{server_port}/page", f"http://127.1:{server_port}/page"):
        result = fetch(url, settings)
        assert result.error == f"refused: port {url.split(':')[2].split('/')[0]} (only 80 and " \
            "443)", url  # type: ignore[attr-defined]


def test_an_overridden_host_is_told_the_scheme_asked_for_http_too(server_port: int) -> None:
    """The sandbox speaks plain HTTP: X-Forwarded-Proto tells it the scheme of the URL, so
    that it can redirect http to https as the real site would."""
    async def proto_seen(url: str, settings: Settings) -> str:
        async with make_client(settings) as client:
            target = await resolve_target(url, settings)
            response = await client.send(_request(client, target))
            return response.headers["x-proto-seen"]

    for scheme in ("http", "https"):
        assert asyncio.run(proto_seen(f"{scheme}://www.shop.test/page",
                                      settings_for(server_port))) == scheme


def test_sandbox_address_refused_when_allow_list_is_empty(server_port: int) -> None:
    result = fetch("http://www.shop.test/page", settings_for(server_port, site_allow_networks=[]))
    assert result.error.startswith("refused:")  # type: ignore[attr-defined]
    assert "127.0.0.1" in result.error  # type: ignore[attr-defined]


def test_body_that_never_finishes_is_cut_off_by_the_deadline(server_port: int) -> None:
    result = fetch("http://www.shop.test/never-ends", settings_for(server_port, site_timeout_s=1.0))
    assert result.error.startswith("timeout:")  # type: ignore[attr-defined]


def test_huge_body_is_truncated_at_the_cap(server_port: int) -> None:
    result = fetch("http://www.shop.test/huge", settings_for(server_port, site_max_bytes=50_000))
    assert result.error is None and result.truncated  # type: ignore[attr-defined]
    assert len(result.body) == 50_000  # type: ignore[attr-defined]


def test_compressed_body_is_capped_as_it_is_decompressed(server_port: int) -> None:
    """A server may gzip despite Accept-Encoding: identity; the byte cap must bound what is
    inflated in memory, not only what is kept (64 KB on the wire is 64 MB inflated)."""
    import tracemalloc

    settings = settings_for(server_port, site_max_bytes=1_000_000)
    plain = fetch("http://www.shop.test/gzipped", settings)
    assert plain.error is None and plain.body == PAGE  # type: ignore[attr-defined]
    tracemalloc.start()
    try:
        result = fetch("http://www.shop.test/gzip-bomb", settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error is None and result.truncated  # type: ignore[attr-defined]
    assert len(result.body) == 1_000_000  # type: ignore[attr-defined]
    assert peak < 16_000_000, f"{peak:,} bytes allocated for a 1 MB cap"


@pytest.mark.parametrize("query", ["", "?raw=1"], ids=["zlib", "raw"])
def test_deflate_body_is_read_zlib_wrapped_or_raw(server_port: int, query: str) -> None:
    result = fetch(f"http://www.shop.test/deflated{query}", settings_for(server_port))
    assert result.error is None and result.body == PAGE  # type: ignore[attr-defined]


def test_non_html_is_refused(server_port: int) -> None:
    result = fetch("http://www.shop.test/pdf", settings_for(server_port))
    assert result.error.startswith("not_html:")  # type: ignore[attr-defined]
    assert result.body == b""  # type: ignore[attr-defined]


def test_server_error_is_recorded_with_its_status(server_port: int) -> None:
    result = fetch("http://www.shop.test/error", settings_for(server_port))
    assert result.status == 500 and result.error == "http_error: status 500"  # type: ignore[attr-defined]


def test_unreachable_port_is_reported_not_raised() -> None:
    result = fetch("http://www.shop.test/page", settings_for(free_port()))
    assert result.error.startswith("unreachable:")  # type: ignore[attr-defined]


def test_connection_dropped_mid_body_is_recorded_not_raised() -> None:
    """A server that promises 100 KB, sends a little, then closes the connection."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve_once() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n"
                     b"\r\n<html><body>Book now")
        conn.close()

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    try:
        result = fetch("http://www.shop.test/", settings_for(port))
    finally:
        thread.join(timeout=5)
        listener.close()
    assert result.error.startswith("unreachable:")  # type: ignore[attr-defined]
