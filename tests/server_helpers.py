"""Running the real ASGI app on uvicorn inside the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from uniinfer.server import App

#: A bare ASGI application (a test's own, without the gateway).
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@asynccontextmanager
async def serve(app: App | ASGIApp, http: Any = "httptools") -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (free port) with uvicorn + httptools (or the ``http`` protocol
    given: ``uniinfer serve``'s, say); yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=http, lifespan="on", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
