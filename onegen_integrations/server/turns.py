"""`TurnRunner`: blocking model work off the event loop, a bounded number at once.

Turns run on worker threads (the model's forward passes take turns on its lock, so several
conversations advance together, each as if alone). Up to `concurrency` run at once and up to
`queue` more wait; a request beyond that is refused with 503 rather than left hanging. A turn's
events cross to the event loop as they happen, so a response can stream them; when the reader
goes away (a client disconnected) the worker stops at its next event and the turn ends as a
turn whose reader stopped does: its conversation keeps what was fed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from onegen_integrations.server.errors import ApiError

T = TypeVar("T")
Put = Callable[[Any], None]
"""Hands one item from the worker thread to the reader."""
Producer = Callable[[Put, threading.Event], None]
"""Work for a worker thread: puts its items, and stops early once the event is set."""

_END = object()


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class TurnRunner:
    """Runs producers on `concurrency` threads with at most `queue` requests waiting."""

    def __init__(self, *, concurrency: int, queue: int) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self.running = 0
        self.waiting = 0
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="onegen-turn")
        self._slots: asyncio.Semaphore | None = None

    async def stream(self, produce: Producer) -> AsyncIterator[Any]:
        """Run `produce` on a worker thread once a slot is free; yield what it puts.

        Raises `ApiError` 503 at once when the queue is full, and re-raises the producer's
        error where it happened in the sequence of items.
        """
        await self._acquire()
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        def work() -> None:
            try:
                produce(put, stop)
            except BaseException as error:  # handed to the reader, which raises it
                put(_Failed(error))
            finally:
                put(_END)

        self.running += 1
        # The slot is freed when the thread is done, not when the reader leaves.
        loop.run_in_executor(self._executor, work).add_done_callback(lambda _: self._release())
        try:
            while (item := await items.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            stop.set()

    async def call(self, function: Callable[[], T]) -> T:
        """`function()` on a worker thread, queued like a turn."""
        items = self.stream(lambda put, _: put(function()))
        try:
            return await anext(items)
        finally:
            await items.aclose()

    async def _acquire(self) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        if self._slots.locked() and self.waiting >= self.queue:
            raise ApiError(
                503,
                f"the server is busy: {self.running} requests are running and {self.waiting} waiting; retry shortly",
                code="queue_full",
                headers={"Retry-After": "1"},
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1

    def _release(self) -> None:
        self.running -= 1
        assert self._slots is not None
        self._slots.release()

    def shutdown(self) -> None:
        """Stop taking work; running turns finish."""
        self._executor.shutdown(wait=False, cancel_futures=True)
