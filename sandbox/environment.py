"""The settings (as environment variables) that point leadflow at a running sandbox."""

from __future__ import annotations

import json


def sandbox_env(host: str, port: int) -> dict[str, str]:
    origin = f"http://{host}:{port}"
    return {
        "LEADFLOW_APOLLO_BASE_URL": f"{origin}/apollo/api/v1",
        "LEADFLOW_GOOGLE_PLACES_BASE_URL": f"{origin}/google_places/v1",
        "LEADFLOW_PDL_BASE_URL": f"{origin}/pdl/v5",
        "LEADFLOW_HUNTER_BASE_URL": f"{origin}/hunter/v2",
        "LEADFLOW_OPENAI_BASE_URL": f"{origin}/openai/v1",
        # The sandbox accepts any key; these are placeholders, not secrets.
        "LEADFLOW_APOLLO_API_KEY": "sandbox-apollo-key",
        "LEADFLOW_GOOGLE_PLACES_API_KEY": "sandbox-google-key",
        "LEADFLOW_PDL_API_KEY": "sandbox-pdl-key",
        "LEADFLOW_HUNTER_API_KEY": "sandbox-hunter-key",
        "LEADFLOW_OPENAI_API_KEY": "sandbox-openai-key",
        # Every website host is served by the sandbox, which the fetcher may then reach.
        "LEADFLOW_SITE_HOST_OVERRIDES": json.dumps({"*": f"{host}:{port}"}),
        "LEADFLOW_SITE_ALLOW_NETWORKS": json.dumps([f"{host}/32"]),
    }
