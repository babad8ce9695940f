"""SSRF-safe fetching of one business website: every hop's host is resolved here, checked against
private/loopback/link-local/reserved ranges (unless allow-listed) and connected to by the checked
IP, under a total deadline, a byte cap, a redirect limit and an HTML-only content-type rule."""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

HTML_TYPES = ("text/html", "application/xhtml+xml")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
# Networks that are globally routable on paper but reach private space by translation, and
# IPv6 site-local (deprecated, but still routed inside networks that used it; Python counts it
# as global).
EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "100.64.0.0/10",
              "fec0::/10")
)
BLOCKED_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")
USER_AGENT = "leadflow-site-analyser/0.1 (+https://example.com/leadflow)"


class FetchRefused(Exception):
    """The URL may not be fetched (scheme, userinfo, port, or a forbidden address)."""


@dataclass(slots=True)
class FetchResult:
    url: str
    final_url: str
    status: int | None = None
    content_type: str | None = None
    body: bytes = b""
    truncated: bool = False
    error: str | None = None  # "<kind>: <reason>"; kind in ERROR_KINDS
    redirects: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


ERROR_KINDS = ("invalid_url", "refused", "unreachable", "timeout", "too_large", "not_html",
               "http_error", "too_many_redirects")


@dataclass(frozen=True, slots=True)
class Target:
    """Where one hop connects: the checked IP and port, and what goes on the wire."""

    url: str  # the URL as the page sees it (scheme kept for the analysis)
    host: str
    ip: str
    port: int
    connect_scheme: str  # http for overridden (sandbox) hosts, else the URL's scheme
    overridden: bool = False  # reached through site_host_overrides (the sandbox)


def _networks(settings: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in settings.site_allow_networks]


def check_ip(ip: str, allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
    """Raise FetchRefused unless `ip` is a public unicast address or allow-listed."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if any(addr in net for net in allow):
        return
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        raise FetchRefused(f"refused: IPv4-mapped address {addr}")
    if (
        addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved
        or addr.is_multicast or addr.is_unspecified or not addr.is_global
        or any(addr in net for net in EXTRA_BLOCKED if net.version == addr.version)
    ):
        raise FetchRefused(f"refused: {addr} is not a public address")


def _literal_ip(host: str) -> str | None:
    """The IP a host string denotes literally, including legacy IPv4 forms (127.1, 0x7f.1,
    2130706433) that resolvers accept."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host) and any(c.isdigit() for c in host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _override(host: str, settings: Any) -> tuple[str, int] | None:
    for pattern, address in settings.site_host_overrides.items():
        if fnmatch.fnmatchcase(host, pattern.lower()):
            ip, _, port = address.rpartition(":")
            return ip.strip("[]"), int(port)
    return None


async def resolve_target(url: str, settings: Any) -> Target:
    """Validate `url` and find the address to connect to; raise FetchRefused otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchRefused(f"invalid_url: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchRefused(f"refused: scheme {scheme or '(none)'!r} is not http(s)")
    if "@" in parts.netloc:
        raise FetchRefused("refused: credentials in URL")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise FetchRefused("invalid_url: no host")
    # The ASCII form first: IDNA maps fullwidth letters, digits and dots to ASCII, and that is the
    # name resolved and sent, so the literal-IP and local-name rules must see it.
    try:
        host = host.encode("idna").decode("ascii").rstrip(".").lower()
    except UnicodeError:
        raise FetchRefused(f"invalid_url: bad host name {host!r}") from None
    allow = _networks(settings)
    literal = _literal_ip(host)
    if literal is not None:
        # Literal IPs never go through the host overrides: no way to reach the metadata
        # service by writing its address, sandbox or not.
        check_ip(literal, allow)
        # The allow-list admits an address, never every service on it: a website is on 80
        # or 443 (the sandbox is reached by name, through site_host_overrides).
        if port not in (None, 80, 443):
            raise FetchRefused(f"refused: port {port} (only 80 and 443)")
        return Target(url, host, literal, port or (443 if scheme == "https" else 80), scheme)
    if host in BLOCKED_NAMES or host.endswith(BLOCKED_SUFFIXES):
        raise FetchRefused(f"refused: {host} is a local name")
    override = _override(host, settings)
    if override is not None:
        ip, oport = override
        check_ip(ip, allow)
        return Target(url, host, ip, oport, "http", overridden=True)
    default_port = 443 if scheme == "https" else 80
    if port not in (None, 80, 443):
        raise FetchRefused(f"refused: port {port} (only 80 and 443)")
    port = port or default_port
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchRefused(f"unreachable: cannot resolve {host}: {exc}") from None
    ips = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not ips:
        raise FetchRefused(f"unreachable: no address for {host}")
    # Every answer must be allowed: a mixed answer is a rebinding attempt or a misconfiguration.
    for ip in ips:
        check_ip(ip, allow)
    return Target(url, host, ips[0], port, scheme)


def _request(client: httpx.AsyncClient, target: Target) -> httpx.Request:
    parts = urlsplit(target.url)
    ip = f"[{target.ip}]" if ":" in target.ip else target.ip
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    wire = f"{target.connect_scheme}://{ip}:{target.port}{path}"
    default = 443 if parts.scheme == "https" else 80
    host_header = target.host if (parts.port in (None, default)) else f"{target.host}:{parts.port}"
    headers = {"Host": host_header, "User-Agent": USER_AGENT, "Accept": "text/html,*/*;q=0.5",
               "Accept-Encoding": "identity"}
    extensions: dict[str, Any] = {}
    if target.connect_scheme == "https":
        extensions["sni_hostname"] = target.host
    if target.overridden or target.connect_scheme != parts.scheme:
        # Overridden hosts are reached over plain HTTP; tell the server what was asked for
        # (http too, so that it can redirect to https), as a TLS-terminating proxy would.
        headers["X-Forwarded-Proto"] = parts.scheme
    return client.build_request("GET", wire, headers=headers, extensions=extensions)


class _Inflater:
    """A gzip/deflate body inflated a bounded amount at a time (httpx's own decoding inflates
    whole network reads, whatever the byte cap). `deflate` is zlib-wrapped by the standard,
    but some servers send it raw: told apart by the zlib header, as browsers and httpx do."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding != "deflate"
        self._obj: Any = None
        self._head = b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._obj is None:
            data = self._head + data
            if not self._gzip and len(data) < 2:  # too little to tell the two apart yet
                self._head = data
                return b""
            wbits = zlib.MAX_WBITS | 32  # gzip or zlib header, detected
            if not self._gzip and not _zlib_header(data):
                wbits = -zlib.MAX_WBITS  # raw deflate
            self._obj = zlib.decompressobj(wbits)
        return bytes(self._obj.decompress(data, max_length))

    @property
    def unconsumed_tail(self) -> bytes:
        return bytes(self._obj.unconsumed_tail) if self._obj is not None else b""


def _zlib_header(data: bytes) -> bool:
    """RFC 1950: compression method 8 and a header checksum divisible by 31."""
    return data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _inflater(content_encoding: str | None) -> _Inflater | None:
    """The inflater of a gzip/deflate body, None for identity (or an encoding httpx would not
    decode either)."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Inflater(encoding)
    return None


def _is_html(content_type: str | None, head: bytes) -> bool:
    if content_type:
        return content_type.split(";", 1)[0].strip().lower() in HTML_TYPES
    sniff = head[:512].lstrip().lower()
    return sniff.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


async def _fetch(url: str, client: httpx.AsyncClient, settings: Any, result: FetchResult) -> None:
    current = url
    for hop in range(settings.site_max_redirects + 1):
        try:
            target = await resolve_target(current, settings)
        except FetchRefused as exc:
            result.error = str(exc)
            return
        request = _request(client, target)
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException as exc:
            result.error = f"timeout: {type(exc).__name__} talking to {target.host}"
            return
        except httpx.HTTPError as exc:
            result.error = f"unreachable: {type(exc).__name__}: {exc}"[:300]
            return
        try:
            result.final_url = current
            result.status = response.status_code
            result.content_type = response.headers.get("content-type")
            if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                location = urljoin(current, response.headers["location"].strip())
                result.redirects.append(location)
                current = location
                if hop == settings.site_max_redirects:
                    result.error = (f"too_many_redirects: more than "
                                    f"{settings.site_max_redirects}")
                    return
                continue
            if response.status_code >= 400:
                result.error = f"http_error: status {response.status_code}"
                return
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > settings.site_max_bytes:
                result.error = (f"too_large: content-length {declared} exceeds "
                                f"{settings.site_max_bytes}")
                return
            if result.content_type and not _is_html(result.content_type, b""):
                result.error = f"not_html: content-type {result.content_type}"
                return
            chunks: list[bytes] = []
            size = 0
            inflate = _inflater(response.headers.get("content-encoding"))
            try:
                async for raw in response.aiter_raw():
                    # Inflated no further than the room left: 64 KB of gzip can be 64 MB.
                    chunk = raw if inflate is None else inflate.decompress(
                        raw, settings.site_max_bytes - size + 1)
                    while chunk:
                        room = settings.site_max_bytes - size
                        if len(chunk) >= room:
                            chunks.append(chunk[:room])
                            size += room
                            result.truncated = True
                            break
                        chunks.append(chunk)
                        size += len(chunk)
                        if inflate is None or not inflate.unconsumed_tail:
                            break
                        # What the last call held back for want of room: inflate some more.
                        chunk = inflate.decompress(inflate.unconsumed_tail, room - len(chunk) + 1)
                    if result.truncated:
                        break
            except httpx.HTTPError as exc:  # the server dropped the connection mid-body
                result.error = f"unreachable: {type(exc).__name__} while reading the body"[:300]
                return
            except zlib.error as exc:
                result.error = f"unreachable: corrupt compressed body: {exc}"[:300]
                return
            result.body = b"".join(chunks)
            if not result.content_type and not _is_html(None, result.body):
                result.error = "not_html: no content-type and the body is not HTML"
            return
        finally:
            await response.aclose()


async def fetch_site(url: str, client: httpx.AsyncClient, settings: Any) -> FetchResult:
    """Fetch `url` (redirects followed by hand, each hop re-checked) within `site_timeout_s`
    in total; never raises for network or policy failures: see FetchResult.error."""
    result = FetchResult(url=url, final_url=url)
    try:
        async with asyncio.timeout(settings.site_timeout_s):
            await _fetch(url, client, settings, result)
    except TimeoutError:
        result.error = f"timeout: no complete response within {settings.site_timeout_s:g} s"
        if result.body:
            result.body = b""
    return result


def make_client(settings: Any, pool_size: int | None = None) -> httpx.AsyncClient:
    """The one AsyncClient the analyser shares across fetches (connection pooling, no env
    proxies: a proxy would resolve names itself and defeat the address checks)."""
    size = max(1, pool_size or settings.http_concurrency)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    timeout = httpx.Timeout(settings.site_timeout_s, connect=settings.http_connect_timeout_s)
    return httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False,
                             follow_redirects=False)
