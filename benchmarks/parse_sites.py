"""Parsing cost of realistic pages: the BeautifulSoup (lxml builder) reference against the lxml
fast path, on pages from the sandbox's site generator (no server needed).

    python benchmarks/parse_sites.py [--pages 300] [--rounds 5]

Last line: bs4_ms_per_page=<n> fast_ms_per_page=<n> speedup=<n> median_kb=<n>
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.sites import render_site, sample_business  # noqa: E402
from tasks.website.detect import analyse_html  # noqa: E402


def time_engine(pages: list[tuple[bytes, str, str]], engine: str) -> float:
    """Seconds to analyse every page once with `engine`."""
    start = time.perf_counter()
    for body, content_type, url in pages:
        analyse_html(body, url, content_type, engine=engine)  # type: ignore[arg-type]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    pages = []
    for i in range(args.pages):
        business = sample_business(i)
        body, content_type = render_site(business)
        pages.append((body, content_type, f"https://{business.domain}/"))
    sizes = sorted(len(p[0]) for p in pages)
    total_kb = sum(sizes) / 1024
    median_kb = statistics.median(sizes) / 1024
    p90_kb = sizes[int(len(sizes) * 0.9)] / 1024
    print(f"{len(pages)} pages, median {median_kb:.1f} KB, p90 {p90_kb:.1f} KB,"
          f" max {sizes[-1] / 1024:.1f} KB, total {total_kb / 1024:.1f} MB")

    time_engine(pages[:20], "fast")  # warm-up: signature table, regex compilation
    time_engine(pages[:5], "bs4")
    results: dict[str, list[float]] = {"bs4": [], "fast": []}
    for r in range(args.rounds):
        for engine in ("bs4", "fast"):
            seconds = time_engine(pages, engine)
            results[engine].append(seconds)
            print(f"round {r + 1} {engine:>4}: {seconds * 1000 / len(pages):7.2f} ms/page "
                  f"{seconds * 1000 / total_kb:6.3f} ms/KB")
    bs4_ms = statistics.median(results["bs4"]) * 1000 / len(pages)
    fast_ms = statistics.median(results["fast"]) * 1000 / len(pages)
    print(f"median over rounds: bs4 {bs4_ms:.2f} ms/page ({bs4_ms * len(pages) / total_kb:.3f} "
          f"ms/KB), fast {fast_ms:.2f} ms/page ({fast_ms * len(pages) / total_kb:.3f} ms/KB)")
    print(f"bs4_ms_per_page={bs4_ms:.2f} fast_ms_per_page={fast_ms:.2f} "
          f"speedup={bs4_ms / fast_ms:.1f} median_kb={median_kb:.1f}")


if __name__ == "__main__":
    main()
