"""The models servers list (Ollama's ``/api/tags``, an OpenAI-compatible server's ``/models``),
asked for ``GET /v1/models``, briefly remembered and asked once at a time.

Each listing asked every server anew: a client polling the list sent each local server a
request per poll, and a server that accepts connections and never answers held each listing
for the discovery timeout, on a new connection each. Now a server's answer is kept for
:data:`FRESH_SECONDS` (a failure for :data:`FAILED_SECONDS`), and callers arriving while it is
being asked wait for that one request. A local server that cannot be reached, or does not
answer in time, is unavailable (a request to it would fail the same way).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from uniinfer.errors import ProviderConnectionError, ProviderTimeoutError, UniInferError
from uniinfer.http import HttpClient, Timeouts
from uniinfer.providers.base import ProviderAdapter

__all__ = ["FAILED_SECONDS", "FRESH_SECONDS", "ModelDiscovery"]

log = logging.getLogger("uniinfer.gateway")

#: How long a server's list is reused, and how long a failure to get one is.
FRESH_SECONDS = 15.0
FAILED_SECONDS = 5.0
_TIMEOUTS = Timeouts(connect=1.0, read=2.0, total=3.0)

#: A server's models; None: a local server that cannot be reached.
Found = list[str] | None


class ModelDiscovery:
    """What each configured server lists, cached and single-flight (see the module docs)."""

    def __init__(self, http: HttpClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._clock = clock
        self._known: dict[str, tuple[float, Found]] = {}  # provider -> (fresh until, models)
        self._asking: dict[str, asyncio.Task[Found]] = {}

    async def models(self, name: str, adapter: ProviderAdapter) -> Found:
        """The models provider ``name`` lists ([] when it lists none or offers no list)."""
        if adapter.models_request() is None:
            return []
        known = self._known.get(name)
        if known is not None and known[0] > self._clock():
            return known[1]
        task = self._asking.get(name)
        if task is None:
            task = asyncio.ensure_future(self._ask(name, adapter))
            self._asking[name] = task
            task.add_done_callback(lambda _: self._asking.pop(name, None))
        # a caller that leaves does not cancel the request the others wait for
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this caller was cancelled
            return []  # the request was (the gateway closing): nothing found

    async def _ask(self, name: str, adapter: ProviderAdapter) -> Found:
        request = adapter.models_request()
        assert request is not None
        found: Found = []
        try:
            resp = await self._http.send(request, _TIMEOUTS, name)
            if resp.status == 200:
                found = adapter.parse_models(resp.body)
        except (ProviderConnectionError, ProviderTimeoutError) as exc:
            log.debug("model discovery for %s failed: %s", name, exc.message)
            found = None if adapter.spec.local else []
        except UniInferError as exc:
            log.debug("model discovery for %s failed: %s", name, exc.message)
        ttl = FRESH_SECONDS if found else FAILED_SECONDS
        self._known[name] = (self._clock() + ttl, found)
        return found

    async def aclose(self) -> None:
        """Stop the requests still under way (the pool they use is closing)."""
        tasks = list(self._asking.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
