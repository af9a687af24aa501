"""Admission control: at most ``max_concurrency`` requests run, at most ``max_queue`` wait, the rest get a 429.

``run`` also bounds each request's time (504 after ``request_timeout_s``, queueing included) and
watches the connection: when the client goes away, its work is cancelled and its slot freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request

from tuneforge.serving.metrics import Metrics
from tuneforge.serving.schemas import ApiError


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class Admission:
    def __init__(self, max_concurrency: int, max_queue: int, timeout_s: float, metrics: Metrics) -> None:
        self.slots = asyncio.Semaphore(max_concurrency)
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.waiting = 0
        self.active = 0  # requests holding a slot
        self.mean_seconds = 0.5  # running mean of time in a slot: the basis of Retry-After

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        leave = await self.enter()
        try:
            yield
        finally:
            leave()

    async def enter(self) -> Callable[[], None]:
        """Wait for a slot (429 at once when the queue is full); returns the function that gives it back."""
        if self.slots.locked() and self.waiting >= self.max_queue:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(429, "the server is at capacity; retry after the number of seconds in Retry-After",
                           "rate_limit_error", {"Retry-After": str(self.retry_after())})
        self.waiting += 1
        self.metrics.queue_depth.inc()
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
            self.metrics.queue_depth.dec()
        self.metrics.in_flight.inc()
        self.active += 1
        loop = asyncio.get_running_loop()
        start = loop.time()
        left = False

        def leave() -> None:
            nonlocal left
            if not left:
                left = True
                self.slots.release()
                self.active -= 1
                self.metrics.in_flight.dec()
                self.mean_seconds = 0.9 * self.mean_seconds + 0.1 * (loop.time() - start)

        return leave

    async def enter_in_time(self) -> Callable[[], None]:
        """``enter`` bounded by the request timeout (for streams, which hold their slot while they send)."""
        try:
            return await asyncio.wait_for(self.enter(), self.timeout_s)
        except TimeoutError:
            self.metrics.rejected.labels("timeout").inc()
            raise ApiError(504, f"no slot within {self.timeout_s:g} s (serve.request_timeout_s)",
                           "timeout_error") from None

    def retry_after(self) -> int:
        """Seconds until the queue ahead has probably drained: queue length x mean time / slots."""
        return max(1, min(60, math.ceil(self.waiting * self.mean_seconds / self.max_concurrency)))

    async def run(self, request: Request, work: Callable[[], Awaitable]):
        """``work()``'s result, run within a slot and the time limit, abandoned if the client disconnects."""
        async def admitted():
            async with self.slot():
                return await work()

        task = asyncio.ensure_future(admitted())
        watcher = asyncio.ensure_future(wait_for_disconnect(request))
        try:
            done, _ = await asyncio.wait({task, watcher}, timeout=self.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            if watcher in done:
                self.metrics.rejected.labels("client_gone").inc()
                raise ClientGone()
            self.metrics.rejected.labels("timeout").inc()
            raise ApiError(504, f"the request took longer than {self.timeout_s:g} s (serve.request_timeout_s)",
                           "timeout_error")
        finally:
            for pending in (task, watcher):
                pending.cancel()
            await asyncio.gather(task, watcher, return_exceptions=True)


async def wait_for_disconnect(request: Request) -> None:
    """Returns once the client has closed the connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
