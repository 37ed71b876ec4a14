"""A reply sink that holds everything back until the turn is confirmed (speculative turns).

When the user pauses, the assistant may start answering before the endpointer is sure the
utterance is over: ASR, the LLM and the first synthesis run while the last few hundred
milliseconds of silence elapse. Their output goes to a :class:`HeldSink`, which queues the
calls; :meth:`release` replays them to the real sink in order and passes later calls
straight through. If the user speaks again instead, the turn task is cancelled and nothing
it produced ever reaches the device.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable

from .conversation import PCM, ReplySink

Call = Callable[[], Awaitable[None]]


class HeldSink:
    def __init__(self, sink: ReplySink):
        self._sink = sink
        self._held: list[Call] | None = []
        self._released = asyncio.Event()

    @property
    def released(self) -> bool:
        return self._held is None

    @property
    def held_calls(self) -> int:
        return len(self._held or ())

    async def release(self) -> None:
        """Send what was held, in order; from now on calls go straight through."""
        held, self._held = self._held or [], None
        for call in held:
            await call()
        self._released.set()

    async def _do(self, call: Call) -> None:
        if self._held is None:
            await call()
        else:
            self._held.append(call)

    async def stt(self, text: str) -> None:
        await self._do(lambda: self._sink.stt(text))

    async def emotion(self, emotion: str, emoji: str = "") -> None:
        await self._do(lambda: self._sink.emotion(emotion, emoji))

    async def say(self, text: str, audio: PCM | AsyncIterable[PCM], sample_rate: int) -> None:
        await self._do(lambda: self._sink.say(text, audio, sample_rate))

    async def end_reply(self) -> None:
        await self._do(self._sink.end_reply)

    async def wait_played(self) -> None:
        await self._released.wait()
        await self._sink.wait_played()

    async def abort(self) -> None:
        if self._held is None:
            await self._sink.abort()
        else:
            self._held.clear()

    def reply_marks(self) -> tuple[float | None, float | None]:
        return self._sink.reply_marks()

    async def close(self, reason: str) -> None:
        await self._released.wait()
        await self._sink.close(reason)
