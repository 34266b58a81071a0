"""aiohttp's request body written at once on Python 3.11, as aiohttp itself does on 3.12+.

aiohttp sends a request's body from a task of its own (the coroutine
``ClientRequest.write_bytes``). On Python 3.12+ it starts that task eagerly
(``eager_start=True``): a body that fits the socket's buffer goes out, with
the headers in one ``write``, before ``send`` returns, and no task is left
over. On 3.11 the task first runs on the event loop's next pass, so every
upstream request also waits for whatever else that pass holds (with 128
requests in flight, often a millisecond or more) and costs a task.

:func:`install` gives the running loop a task factory that starts that one
coroutine eagerly, the way 3.12 would: its first step runs inside
``create_task``; if it finishes there, the caller gets a finished future,
otherwise a task that carries on from where it stopped. Every other
coroutine gets a plain task. ``uniinfer serve`` installs it on the loop it
owns; the SDK leaves its caller's loop alone. On 3.12+ it does nothing.

Measured with bench/compare.py (50 ms upstream, c=128): see
docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context
from typing import Any

__all__ = ["install"]


def install(loop: asyncio.AbstractEventLoop) -> bool:
    """Start aiohttp's body writer eagerly on ``loop``; False where not needed or not possible."""
    if sys.version_info >= (3, 12) or loop.get_task_factory() is not None:
        return False
    from aiohttp.client_reqrep import ClientRequest

    loop.set_task_factory(_factory_for(ClientRequest.write_bytes.__code__))  # type: ignore[arg-type]
    return True


def _factory_for(
    target: types.CodeType,
) -> Callable[[asyncio.AbstractEventLoop, Coroutine[Any, Any, Any]], asyncio.Future[Any]]:
    """A task factory that starts coroutines of ``target`` eagerly and no others."""

    def factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], *, context: Context | None = None
    ) -> asyncio.Future[Any]:
        if getattr(coro, "cr_code", None) is target:
            return _start_eagerly(loop, coro, context)
        return asyncio.Task(coro, loop=loop, context=context)

    return factory


def _start_eagerly(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], context: Context | None
) -> asyncio.Future[Any]:
    try:
        awaited = coro.send(None)
    except StopIteration as done:
        finished = loop.create_future()
        finished.set_result(done.value)
        return finished
    except asyncio.CancelledError:
        finished = loop.create_future()
        finished.cancel()
        return finished
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        finished = loop.create_future()
        finished.set_exception(exc)
        return finished
    return asyncio.Task(_resume(coro, awaited), loop=loop, context=context)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], awaited: Any) -> Generator[Any, None, Any]:
    """Carry on a coroutine whose first step already ran and is waiting on ``awaited``."""
    while True:
        try:
            yield awaited
        except BaseException as exc:  # a cancellation (or anything thrown in) goes to the coroutine
            try:
                awaited = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                awaited = coro.send(None)
            except StopIteration as done:
                return done.value
