"""Runs the sandbox app under uvicorn (one process); `leadflow sandbox` and
`python -m sandbox` both come here."""

from __future__ import annotations

from typing import Any

import uvicorn

from sandbox.app import SandboxConfig, create_app


def serve(host: str, port: int, businesses: int = 2000, seed: int = 7, latency_ms: int = 0,
          faults: dict[str, Any] | None = None) -> None:
    """Build the dataset and serve the fake APIs and websites until interrupted."""
    app = create_app(SandboxConfig(businesses=businesses, seed=seed, latency_ms=latency_ms,
                                   faults=faults))
    # No access log: at thousands of requests/s it costs more than the handlers.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                timeout_keep_alive=30)
