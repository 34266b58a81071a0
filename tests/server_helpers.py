"""Running the real ASGI app on uvicorn inside the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from uniinfer.server import App


@asynccontextmanager
async def serve(app: App) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (free port) with uvicorn + httptools; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http="httptools", lifespan="on", log_level="warning", access_log=False
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
