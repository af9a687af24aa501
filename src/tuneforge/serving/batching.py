"""Dynamic micro-batching: requests that arrive together share one forward pass.

The first input waits at most ``max_wait_ms`` for company, and only while other requests are in
flight (a lone request runs at once); a batch closes at ``max_batch_size`` inputs. Inputs whose
request has gone (timeout, client disconnect) are dropped before they cost a forward pass. One
batch runs at a time per model, in that model's inference thread, so the event loop stays free to
accept and answer requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Executor

from tuneforge.serving.metrics import Metrics


class MicroBatcher:
    def __init__(self, model: str, run_batch: Callable[[list], list], executor: Executor, max_batch_size: int,
                 max_wait_ms: float, metrics: Metrics, in_flight: Callable[[], int] = lambda: 0) -> None:
        self.model = model
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.metrics = metrics
        self.in_flight = in_flight  # requests the server is working on: could any of them join this batch?
        self.queue: asyncio.Queue[tuple[object, asyncio.Future]] = asyncio.Queue()
        self.worker: asyncio.Task | None = None

    async def submit(self, items: list) -> list:
        """Results for ``items`` in order; they may run in several batches beside other requests' inputs."""
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._work(), name=f"batcher-{self.model}")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures, strict=True):
            self.queue.put_nowait((item, future))
        self.metrics.batch_queue.labels(self.model).set(self.queue.qsize())
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for future in futures:
                future.cancel()  # no-op when done; drops this request's waiting inputs when it was abandoned

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch(loop)
            self.metrics.batch_queue.labels(self.model).set(self.queue.qsize())
            if not batch:
                continue
            self.metrics.batch_size.labels(self.model).observe(len(batch))
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [item for item, _ in batch])
                answers = list(zip(batch, results, strict=True))
            except Exception as error:  # fail this batch's requests (a bug: inputs were checked), keep serving
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in answers:
                if not future.done():
                    future.set_result(result)

    async def _next_batch(self, loop) -> list[tuple[object, asyncio.Future]]:
        batch = [await self.queue.get()]
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch_size:
            if self.queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0 or self.in_flight() <= len(batch):
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            else:
                batch.append(self.queue.get_nowait())
        return [(item, future) for item, future in batch if not future.done()]
