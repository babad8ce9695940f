"""Fault injection, added latency and request statistics for the sandbox's fake APIs and sites.

Per target (apollo, google_places, pdl, hunter, openai, sites) a config such as
`{"rate": 0.2, "kinds": ["429", "503"], "retry_after": 1, "sequence": ["429", "ok"],
"latency_ms": 50}`: `sequence` is consumed one item per request before `rate` applies.
`retry_after` is the wait a 429/503 names, in whatever header its vendor documents
(Retry-After, or PDL's x-ratelimit-reset); `null` sends none at all, as a bare 429 would."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

TARGETS = ("apollo", "google_places", "pdl", "hunter", "openai", "sites")
# HTTP statuses a fault may answer with (each API renders its own documented error body).
STATUS_KINDS = ("202", "400", "401", "402", "403", "404", "408", "429", "500", "502", "503",
                "504")
# Kinds only one target answers with: Hunter's email verifier "still running" (202), which a
# sequence or rate can make pend for ever (Hunter's other endpoints answer it normally).
TARGET_ONLY_KINDS = {"202": "hunter"}
KINDS = (*STATUS_KINDS, "timeout", "malformed", "slow")
TIMEOUT_HOLD_S = 60.0

# (status, seconds the fault asks to wait or None) -> the vendor's error answer, or None when
# the endpoint has no such answer (it then answers normally).
ErrorRenderer = Callable[[int, float | None], Response | None]
Handler = Callable[[Request], Awaitable[Response]]


class FaultConfigError(ValueError):
    """The fault config posted to the sandbox is not valid (the message says why)."""


@dataclass
class TargetFaults:
    rate: float = 0.0
    kinds: list[str] = field(default_factory=lambda: ["500"])
    retry_after: float | None = 1.0  # None: the fault names no wait at all
    sequence: list[str] = field(default_factory=list)
    latency_ms: int = 0
    slow_s: float = 3.0  # how long a "slow" body takes to trickle out

    def to_json(self) -> dict[str, Any]:
        return {"rate": self.rate, "kinds": self.kinds, "retry_after": self.retry_after,
                "sequence": self.sequence, "latency_ms": self.latency_ms, "slow_s": self.slow_s}


def _number(raw: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not lo <= raw <= hi:
        raise FaultConfigError(f"{name} must be a number in [{lo}, {hi}], got {raw!r}")
    return float(raw)


def _kinds(raw: Any, name: str, allow_ok: bool) -> list[str]:
    if not isinstance(raw, list):
        raise FaultConfigError(f"{name} must be a list of fault kinds")
    allowed = (*KINDS, "ok") if allow_ok else KINDS
    out = [str(k) for k in raw]
    bad = [k for k in out if k not in allowed]
    if bad:
        raise FaultConfigError(f"{name} has unknown kinds {bad}; allowed: {list(allowed)}")
    return out


def parse_faults(raw: Any) -> dict[str, TargetFaults]:
    """Validate a whole fault config (`{target: {...}}`); raises FaultConfigError."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FaultConfigError("fault config must be a JSON object keyed by target")
    out: dict[str, TargetFaults] = {}
    for target, cfg in raw.items():
        if target not in TARGETS:
            raise FaultConfigError(f"unknown target {target!r}; targets: {list(TARGETS)}")
        if not isinstance(cfg, dict):
            raise FaultConfigError(f"{target}: config must be an object")
        unknown = set(cfg) - {"rate", "kinds", "retry_after", "sequence", "latency_ms", "slow_s"}
        if unknown:
            raise FaultConfigError(f"{target}: unknown keys {sorted(unknown)}")
        tf = TargetFaults()
        if "rate" in cfg:
            tf.rate = _number(cfg["rate"], f"{target}.rate", 0.0, 1.0)
        if "kinds" in cfg:
            tf.kinds = _kinds(cfg["kinds"], f"{target}.kinds", allow_ok=False)
            if not tf.kinds and tf.rate > 0:
                raise FaultConfigError(f"{target}.kinds must not be empty when rate > 0")
        if "retry_after" in cfg:
            tf.retry_after = None if cfg["retry_after"] is None else _number(
                cfg["retry_after"], f"{target}.retry_after", 0, 3600)
        if "sequence" in cfg:
            tf.sequence = _kinds(cfg["sequence"], f"{target}.sequence", allow_ok=True)
        for kind in {*tf.kinds, *tf.sequence}:
            only = TARGET_ONLY_KINDS.get(kind)
            if only is not None and only != target:
                raise FaultConfigError(f"{target}: {kind} is a fault of {only} only")
        if "latency_ms" in cfg:
            tf.latency_ms = int(_number(cfg["latency_ms"], f"{target}.latency_ms", 0, 600_000))
        if "slow_s" in cfg:
            tf.slow_s = _number(cfg["slow_s"], f"{target}.slow_s", 0, 600)
        out[target] = tf
    return out


class Stats:
    """Request counts per target, per status code and per injected fault."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.targets: dict[str, dict[str, Any]] = {}
        self.started = time.time()

    def record(self, target: str, status: int | str, fault: str | None) -> None:
        t = self.targets.setdefault(target, {"requests": 0, "statuses": {}, "faults": {}})
        t["requests"] += 1
        key = str(status)
        t["statuses"][key] = t["statuses"].get(key, 0) + 1
        if fault is not None:
            t["faults"][fault] = t["faults"].get(fault, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {"since": self.started,
                "total": sum(t["requests"] for t in self.targets.values()),
                "targets": self.targets}


class Usage:
    """Requests per fixed minute/hour/day window per target, for rate-limit headers."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, int], tuple[int, int]] = {}

    def hit(self, target: str) -> tuple[int, int, int]:
        now = int(time.time())
        counts = []
        for span in (60, 3600, 86400):
            start = now - now % span
            ws, n = self._windows.get((target, span), (start, 0))
            n = n + 1 if ws == start else 1
            self._windows[(target, span)] = (start, n)
            counts.append(n)
        return counts[0], counts[1], counts[2]


class FaultInjector:
    """Decides, per request, whether a target answers normally or with a fault."""

    def __init__(self, latency_ms: int, faults: dict[str, TargetFaults], seed: int) -> None:
        self.latency_ms = latency_ms
        self.seed = seed
        self.stats = Stats()
        self.usage = Usage()
        self.on_replace: list[Callable[[], None]] = []
        self.replace(faults)

    def replace(self, faults: dict[str, TargetFaults]) -> None:
        """Install a whole new config; sequences and per-test state restart from scratch."""
        self.faults = faults
        self._rng = random.Random(f"leadflow-sandbox-faults:{self.seed}")
        for hook in self.on_replace:
            hook()

    def config_json(self) -> dict[str, Any]:
        return {t: f.to_json() for t, f in self.faults.items()}

    def next_fault(self, target: str) -> str | None:
        tf = self.faults.get(target)
        if tf is None:
            return None
        if tf.sequence:
            kind = tf.sequence.pop(0)
            return None if kind == "ok" else kind
        if tf.rate > 0 and tf.kinds and self._rng.random() < tf.rate:
            return self._rng.choice(tf.kinds)
        return None

    def delay_s(self, target: str) -> float:
        tf = self.faults.get(target)
        return (self.latency_ms + (tf.latency_ms if tf else 0)) / 1000.0

    async def run(self, target: str, request: Request, handler: Handler,
                  render_error: ErrorRenderer, retry_after_on: tuple[int, ...] = (429, 503)
                  ) -> Response:
        """Answer `request` for `target`: latency, then a fault or the real handler.

        A fault whose status is in `retry_after_on` gets a Retry-After header; a vendor that
        documents another wait hint (or none) passes its own statuses and renders the hint."""
        delay = self.delay_s(target)
        if delay > 0:
            await asyncio.sleep(delay)
        kind = self.next_fault(target)
        tf = self.faults.get(target) or TargetFaults()
        if kind is None:
            response = await handler(request)
        elif kind == "timeout":
            await _hold(request, TIMEOUT_HOLD_S)
            self.stats.record(target, "timeout", kind)
            return Response(status_code=504)
        elif kind in ("malformed", "slow"):
            real = await handler(request)
            response = _malformed(real) if kind == "malformed" else _slow(real, tf.slow_s)
        else:
            rendered = render_error(int(kind), tf.retry_after)
            if rendered is None:  # not an answer this endpoint gives: it answers normally
                kind, rendered = None, await handler(request)
            elif int(kind) in retry_after_on and tf.retry_after is not None:
                rendered.headers["Retry-After"] = _retry_after(tf.retry_after)
            response = rendered
        self.stats.record(target, response.status_code, kind)
        return response


def _retry_after(seconds: float) -> str:
    # Retry-After is whole seconds on the wire; fractions round up so clients never come early.
    return str(int(seconds) if float(seconds).is_integer() else int(seconds) + 1)


async def _hold(request: Request, seconds: float) -> None:
    """Keep the request open until `seconds` pass or the client goes away."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.1)


def _malformed(real: Response) -> Response:
    body = bytes(real.body) if real.body else b'{"data": ['
    cut = body[: max(1, len(body) // 2)]
    if cut.rstrip().endswith((b"}", b"]")):  # make sure the cut really breaks the JSON
        cut += b',"'
    return Response(cut, status_code=200, media_type="application/json")


def _slow(real: Response, seconds: float) -> Response:
    body = bytes(real.body)
    chunks = max(1, min(len(body), 20))
    size = -(-len(body) // chunks) if body else 1

    async def trickle() -> AsyncIterator[bytes]:
        for start in range(0, len(body), size):
            yield body[start : start + size]
            await asyncio.sleep(seconds / chunks)

    headers = {k: v for k, v in real.headers.items() if k.lower() != "content-length"}
    return StreamingResponse(trickle(), status_code=real.status_code, headers=headers)
