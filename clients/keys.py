"""Where each external API's key comes from: the SecretStr setting, else a Prefect Secret block
named by `<source>_secret_block`. Keys are returned to the caller only, never logged."""

from __future__ import annotations

from collections.abc import Callable

from leadflow.settings import Settings

SOURCES: tuple[str, ...] = ("apollo", "google_places", "pdl", "hunter", "openai")


def load_prefect_secret(name: str) -> str:
    """The value of the Prefect Secret block `name` (Prefect is imported only when needed)."""
    from prefect.blocks.system import Secret

    # `_sync=True`: callers may be inside an event loop, where Prefect would otherwise hand
    # back a coroutine instead of the block.
    block: Secret = Secret.load(name, _sync=True)  # type: ignore[call-arg, assignment]
    return str(block.get())


def resolve_api_key(
    source: str,
    settings: Settings,
    load_secret: Callable[[str], str] = load_prefect_secret,
) -> str | None:
    """The API key for `source`, or None when neither the setting nor a Secret block names one.

    Raises ValueError for an unknown source; a failing Secret block load raises a short error
    that names the block, not its value."""
    if source not in SOURCES:
        raise ValueError(f"unknown API source {source!r}; expected one of {', '.join(SOURCES)}")
    secret = getattr(settings, f"{source}_api_key", None)
    if secret is not None:
        # SecretStr from the environment; a plain str if settings were built without validation.
        value = (secret if isinstance(secret, str) else secret.get_secret_value()).strip()
        if value:
            return value
    block_name = getattr(settings, f"{source}_secret_block", None)
    if not block_name:
        return None
    try:
        value = load_secret(block_name)
    except Exception as exc:  # noqa: BLE001 - whatever Prefect raises, report it without detail
        raise RuntimeError(
            f"could not load the Prefect Secret block {block_name!r} for {source}: "
            f"{type(exc).__name__}"
        ) from None
    return value.strip() or None


def require_api_key(source: str, settings: Settings) -> str:
    """The key for `source`, or a MissingApiKeyError that says where to put one."""
    from clients.http import MissingApiKeyError

    key = resolve_api_key(source, settings)
    if key is None:
        raise MissingApiKeyError(
            f"no API key: set LEADFLOW_{source.upper()}_API_KEY or name a Prefect Secret block "
            f"in LEADFLOW_{source.upper()}_SECRET_BLOCK",
            source=source,
            endpoint="-",
        )
    return key
