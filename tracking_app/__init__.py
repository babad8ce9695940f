"""The tracking app: signed open-pixel, click and unsubscribe endpoints that record every hit
as an append-only event (group-committed), flag machine-made ones and keep the derived
engagement figures current. `create_app` builds it, `serve` runs it with uvicorn."""
