"""CPU per API request of the clients' HTTP transport: httpx's own pool (httpcore) vs the
aiohttp-backed transport leadflow uses, side by side on the same sandbox, same requests.

    python benchmarks/http_transport.py [--leads 1000] [--rounds 3]

Each round enriches the same candidates through Hunter (domain search + verifier, ~2 calls per
lead) once per transport, alternating, and measures this process's CPU time. Ends with
`httpcore_ms_per_request=<n> aiohttp_ms_per_request=<n> ratio=<n>`."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()

    from leadflow.demo import start_sandbox
    from sandbox.environment import sandbox_env

    proc, port = start_sandbox(businesses=20_000, latency_ms=args.latency_ms)
    os.environ.update(sandbox_env("127.0.0.1", port))
    try:
        run(args)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def run(args: argparse.Namespace) -> None:
    import httpx

    from clients.http import make_async_client
    from clients.hunter import HunterClient
    from leadflow.settings import get_settings
    from sandbox.dataset import generate_businesses
    from tasks.enrich import enrich_candidates
    from tasks.staging import CandidateLead

    settings = get_settings()
    businesses = [b for b in generate_businesses(20_000, 7) if b.domain][: args.leads]

    def candidates() -> list[CandidateLead]:
        return [CandidateLead(source="bench", source_record_id=str(i), company_name=b.name,
                              website=f"https://{b.domain}/") for i, b in enumerate(businesses)]

    async def enrich(client: httpx.AsyncClient) -> int:
        async with client:
            hunter = HunterClient.from_settings(client, settings)
            result = await enrich_candidates(candidates(), hunter, settings.enrich_concurrency)
        return len(result.calls)

    def httpcore_client() -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=settings.http_concurrency,
                              max_keepalive_connections=settings.http_concurrency)
        return httpx.AsyncClient(timeout=settings.http_timeout_s, limits=limits)

    per_request: dict[str, list[float]] = {"httpcore": [], "aiohttp": []}
    for r in range(args.rounds):
        for name, factory in (("httpcore", httpcore_client),
                              ("aiohttp", lambda: make_async_client(settings))):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            calls = asyncio.run(enrich(factory()))
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            per_request[name].append(cpu / calls * 1000)
            print(f"round {r + 1} {name:<9} {calls} requests, wall {wall:.2f} s, "
                  f"cpu {cpu:.2f} s, {cpu / calls * 1000:.2f} ms cpu/request", flush=True)
    core = statistics.median(per_request["httpcore"])
    aio = statistics.median(per_request["aiohttp"])
    print(f"httpcore_ms_per_request={core:.2f} aiohttp_ms_per_request={aio:.2f} "
          f"ratio={aio / core:.2f}")


if __name__ == "__main__":
    main()
