"""`onegen serve`: an OpenAI-compatible chat server whose conversations keep their KV caches.

    from onegen_integrations.server import ServerSettings, create_app
    app = create_app(model, store, ServerSettings(api_key="secret"))

Needs the `serve` extra (FastAPI and uvicorn): `pip install "onegen-integrations[serve]"`.
`create_app` is imported on first use, so the command line's help loads no web framework.
"""

from typing import Any

from onegen_integrations.server.settings import API_KEY_VARIABLE, ServerSettings

__all__ = ["API_KEY_VARIABLE", "ServerSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name != "create_app":
        raise AttributeError(f"module 'onegen_integrations.server' has no attribute {name!r}")
    from onegen_integrations.server.app import create_app

    return create_app
