"""Loads the data-driven signature table (signatures.json) of booking tools, analytics and social
profiles, and matches normalised URLs and inline-script text against it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SIGNATURES_PATH = Path(__file__).with_name("signatures.json")


@dataclass(frozen=True, slots=True)
class Signature:
    """One tool: URL regexes (anchored), inline-script substrings and optional same-site paths."""

    name: str
    display: str
    urls: tuple[str, ...]
    script: tuple[str, ...]
    site_paths: tuple[str, ...] = ()
    site_generator: str | None = None


@dataclass(frozen=True, slots=True)
class SignatureTable:
    booking: tuple[Signature, ...]
    analytics: tuple[Signature, ...]
    social: tuple[Signature, ...]
    # One alternation per category, each alternative a named group, so a URL costs one match.
    booking_re: re.Pattern[str]
    analytics_re: re.Pattern[str]
    social_re: re.Pattern[str]
    site_path_res: tuple[tuple[str, str, re.Pattern[str]], ...]  # (tool, generator, regex)

    @property
    def booking_names(self) -> list[str]:
        return [s.name for s in self.booking]


def _combined(signatures: tuple[Signature, ...]) -> re.Pattern[str]:
    alternatives = [
        f"(?P<{sig.name}__{i}>{pattern})"
        for sig in signatures
        for i, pattern in enumerate(sig.urls)
    ]
    return re.compile("(?:" + "|".join(alternatives) + ")", re.IGNORECASE)


def _signature(item: dict[str, object]) -> Signature:
    return Signature(
        name=str(item["name"]),
        display=str(item.get("display", item["name"])),
        urls=tuple(item.get("urls", ())),  # type: ignore[arg-type]
        script=tuple(s.lower() for s in item.get("script", ())),  # type: ignore[attr-defined]
        site_paths=tuple(item.get("site_paths", ())),  # type: ignore[arg-type]
        site_generator=item.get("site_generator"),  # type: ignore[arg-type]
    )


def parse_table(data: dict[str, object]) -> SignatureTable:
    """Build a table from the JSON structure (validating that every regex compiles)."""
    booking = tuple(_signature(i) for i in data["booking_tools"])  # type: ignore[attr-defined]
    analytics = tuple(_signature(i) for i in data["analytics"])  # type: ignore[attr-defined]
    social = tuple(
        Signature(name=name, display=name, urls=tuple(patterns), script=())
        for name, patterns in data["social"].items()  # type: ignore[attr-defined]
    )
    names = [s.name for s in booking]
    if len(set(names)) != len(names):
        raise ValueError("duplicate booking tool names in signature table")
    site_paths = tuple(
        (s.name, s.site_generator or "", re.compile(p, re.IGNORECASE))
        for s in booking
        for p in s.site_paths
    )
    return SignatureTable(
        booking=booking,
        analytics=analytics,
        social=social,
        booking_re=_combined(booking),
        analytics_re=_combined(analytics),
        social_re=_combined(social),
        site_path_res=site_paths,
    )


@lru_cache(maxsize=1)
def load_signatures(path: Path = SIGNATURES_PATH) -> SignatureTable:
    """The signature table, loaded and compiled once per process."""
    return parse_table(json.loads(path.read_text(encoding="utf-8")))


def match_url(pattern: re.Pattern[str], normalised_url: str) -> str | None:
    """Name of the signature whose URL pattern matches at the start of the URL, if any."""
    m = pattern.match(normalised_url)
    if m is None or m.lastgroup is None:
        return None
    return m.lastgroup.split("__", 1)[0]


def normalise_url(url: str) -> str | None:
    """Absolute or protocol-relative URL -> 'host/path?query' in lowercase; None for relative
    URLs and non-web schemes (mailto:, tel:, javascript:)."""
    u = url.strip().lower()
    if u.startswith("//"):
        rest = u[2:]
    elif u.startswith("https://"):
        rest = u[8:]
    elif u.startswith("http://"):
        rest = u[7:]
    else:
        return None
    rest = rest.split("#", 1)[0]
    cut = len(rest)
    for sep in "/?":
        i = rest.find(sep)
        if i != -1 and i < cut:
            cut = i
    host, tail = rest[:cut], rest[cut:]
    if "@" in host:
        host = host.rsplit("@", 1)[1]
    if ":" in host and not host.startswith("["):
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    if not host:
        return None
    return host + tail
