"""Fake pdl API (being built)."""

from __future__ import annotations

from starlette.routing import Route

from sandbox.apis.responses import SandboxState


def routes(state: SandboxState) -> list[Route]:
    return []
