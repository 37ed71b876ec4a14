"""Running blocking model code off the event loop.

Model engines are blocking (llama.cpp, CTranslate2, onnxruntime); they release the GIL
while they compute, so worker threads keep every session's audio pacing on time.
:func:`run_blocking` runs one call in a thread; :func:`iterate_blocking` turns a blocking
generator (LLM tokens, TTS chunks) into an async iterator, and stops it (through a
``threading.Event`` the generator checks) when the consumer stops or is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_EXECUTOR = ThreadPoolExecutor(max_workers=16, thread_name_prefix="xiaozhi-model")
_DONE = object()


async def run_blocking(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread. Cancelling the caller does not stop ``fn``."""
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, fn, *args)


async def iterate_blocking(make: Callable[[threading.Event], Iterator[T]]) -> AsyncIterator[T]:
    """Iterate ``make(stop)`` in a worker thread, yielding its items on the event loop.

    ``stop`` is set when the consumer stops early (break, cancel, exception), so the
    generator can end within one step. Exceptions raised by the generator propagate.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in make(stop):
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if stop.is_set():
                    break
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)
        except BaseException as exc:  # handed to the consumer
            with contextlib.suppress(RuntimeError):  # the loop may be gone at shutdown
                loop.call_soon_threadsafe(queue.put_nowait, _Failure(exc))

    future = loop.run_in_executor(_EXECUTOR, produce)
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, _Failure):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        future.add_done_callback(lambda f: f.exception())  # never "exception was never retrieved"


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc
