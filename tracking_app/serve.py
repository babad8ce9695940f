"""Runs the tracking app with uvicorn (what `leadflow tracking` calls)."""

from __future__ import annotations

import logging

import uvicorn

from models.db import safe_url
from tracking_app.app import create_app
from tracking_app.logs import uvicorn_log_config

# Request line and headers together may not exceed this (h11 answers 400 beyond it).
MAX_REQUEST_HEAD_BYTES = 16_384


def server_config(
    app: object, host: str, port: int, *, http: str = "h11", loop: str = "auto"
) -> uvicorn.Config:
    """The uvicorn configuration the app is served with (also used by the benchmark's
    ceiling, so both run on the same server stack). HTTP parsing stays with h11 whatever is
    installed: its limit on a request head is what keeps a client from making the server
    buffer an endless header (httptools has none). The loop is uvloop when installed."""
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        http=http,
        loop=loop,
        # X-Forwarded-For is handled by the app, only from tracking_trusted_proxies.
        proxy_headers=False,
        server_header=False,
        access_log=False,
        lifespan="on",
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        timeout_keep_alive=15,
        timeout_graceful_shutdown=10,
    )


def serve(
    host: str, port: int, db_url: str | None = None, *, http: str = "h11", loop: str = "auto"
) -> None:
    """Serve the tracking app on host:port against db_url (default: settings), until stopped,
    logging JSON lines (tracking_app/logs.py)."""
    config = server_config(create_app(db_url), host, port, http=http, loop=loop)
    config.log_config = uvicorn_log_config()
    config.configure_logging()
    logging.getLogger("leadflow.tracking").info(
        "tracking app listening", extra={"host": host, "port": port,
                                         "database": safe_url(config_db_url(db_url))})
    uvicorn.Server(config).run()


def config_db_url(db_url: str | None) -> str:
    from leadflow.settings import get_settings

    return db_url or get_settings().database_url
