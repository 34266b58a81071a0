"""Running the server with uvicorn, with graceful shutdown.

On SIGTERM/SIGINT the app is marked draining (``/ready`` answers 503) and,
after ``server.drain_delay_seconds`` (default 0) of serving as usual, the time
a load balancer needs to see that and stop sending, uvicorn closes its
listening socket (new connections are refused) and waits up to
``server.graceful_shutdown_seconds`` for in-flight requests and streams to
end. Requests still running then are cut (a request whose answer has not
started gets a 503 ``service_unavailable``, a stream under way that error as
its last event), and the lifespan shutdown closes
the upstream connection pool. A second signal during the delay starts the
drain at once; a second SIGINT (Ctrl-C) during the drain cuts at once. A
shutdown that was asked for exits 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, cast

from uniinfer.config import Config

if TYPE_CHECKING:
    import asyncio

__all__ = ["run"]


def _freeze_startup_objects() -> None:
    """Keep what start-up built out of the garbage collector's walks.

    Modules, pydantic schemas, the configuration and the app live as long as
    the process; every full collection would walk them all again.
    ``gc.freeze()`` moves them to a permanent generation, and a higher
    young-generation threshold keeps collections (and their pauses) off the
    request path: requests free what they allocate by reference counting, so
    under load the default threshold ran one young collection per ~18
    requests and this one none (a small CPU saving, see docs/architecture.md).
    No collection runs first: start-up leaves next to no garbage (5
    unreachable objects of 55,000 when measured), and a full collection would
    cost ~20 ms of cold start.
    """
    import gc

    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


async def _cut(tasks: set[asyncio.Task[None]], *, cancel: bool) -> None:
    """Let the requests cut at shutdown answer before the loop ends (on a forced exit: ``cancel`` them).

    Past the grace period uvicorn cancels the requests left and does not wait
    for them; on a second Ctrl-C it cancels nothing. Each cut request still
    answers (a 503 where nothing was sent, see ``App._run``) and closes its
    upstream connection.
    """
    import asyncio

    left = list(tasks)
    if cancel:  # (once: a request cut twice could not answer its 503)
        for task in left:
            task.cancel("the gateway is shutting down")
    if left:
        await asyncio.wait(left, timeout=1.0)


def run(config: Config, *, log_level: str = "info") -> None:
    import asyncio
    import socket

    import uvicorn

    from uniinfer import eager_writes
    from uniinfer.server import create_app

    app = create_app(config)
    _freeze_startup_objects()

    delay = config.server.drain_delay_seconds

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            first = not app.draining
            app.draining = True  # /ready answers 503 from now on
            if first and delay > 0:
                # serve on while load balancers take this replica out (signal-safe: the
                # loop's self-pipe), then drain; unless a second signal started it already
                loop = asyncio.get_running_loop()  # a signal handler runs in the loop's thread
                loop.call_soon_threadsafe(loop.call_later, delay, self._drain_after_delay, sig, frame)
                return
            super().handle_exit(sig, frame)

        def _drain_after_delay(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    # uvicorn raises the signals it caught again once it has shut down (for a
                    # program that embeds it): this process would then die of its SIGTERM
                    # (exit 143) after a clean drain, and a second Ctrl-C became a
                    # KeyboardInterrupt inside the loop (tracebacks, an unclosed pool).
                    # Here the shutdown was asked for and is done: exit 0.
                    self._captured_signals.clear()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app.draining = True  # also when asked to exit without a signal
            await super().shutdown(sockets)
            await _cut(self.server_state.tasks, cancel=self.force_exit)
            if self.force_exit:  # uvicorn skips the lifespan shutdown then: the pool is closed all the same
                await self.lifespan.shutdown()

        async def serve(self, sockets: list[socket.socket] | None = None) -> None:
            eager_writes.install(asyncio.get_running_loop())  # this process owns the loop
            await super().serve(sockets)

    server = _Server(
        uvicorn.Config(
            app,
            host=config.server.host,
            port=config.server.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level=log_level,
            # the seconds as configured (uvicorn's hint says int, it waits with asyncio.wait_for);
            # round() made 0.4 no grace at all
            timeout_graceful_shutdown=cast(int, config.server.graceful_shutdown_seconds),
            server_header=False,
            # uniinfer reads no client address; the X-Forwarded-* rewrite costs every request
            proxy_headers=False,
        )
    )
    server.run()
