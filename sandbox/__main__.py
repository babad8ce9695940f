"""`python -m sandbox --host H --port P --businesses N --seed S --latency-ms L [--faults JSON]`."""

from __future__ import annotations

import argparse
import json
import sys

from sandbox.faults import FaultConfigError, parse_faults
from sandbox.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox",
                                     description="Local stand-in for the external APIs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--businesses", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--faults", default=None,
                        help='JSON, e.g. {"apollo": {"rate": 0.1, "kinds": ["429"]}}')
    args = parser.parse_args(argv)
    faults = None
    if args.faults:
        try:
            faults = json.loads(args.faults)
            parse_faults(faults)
        except (json.JSONDecodeError, FaultConfigError) as exc:
            parser.error(f"--faults: {exc}")
    if args.businesses < 1:
        parser.error("--businesses must be at least 1")
    serve(args.host, args.port, args.businesses, args.seed, args.latency_ms, faults)
    return 0


if __name__ == "__main__":
    sys.exit(main())
