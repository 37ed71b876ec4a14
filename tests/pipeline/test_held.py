"""HeldSink: a speculative turn's output reaches the device only once released."""

from __future__ import annotations

import asyncio

import numpy as np

from xiaozhi_local.pipeline.held import HeldSink


class Recorder:
    """Records what reaches the session (the real ReplySink is a socket; this is its log)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def stt(self, text: str) -> None:
        self.calls.append(("stt", text))

    async def emotion(self, emotion: str, emoji: str = "") -> None:
        self.calls.append(("emotion", emotion))

    async def say(self, text: str, audio: object, sample_rate: int) -> None:
        self.calls.append(("say", text))

    async def end_reply(self) -> None:
        self.calls.append(("end", None))

    async def wait_played(self) -> None:
        self.calls.append(("wait", None))

    async def abort(self) -> None:
        self.calls.append(("abort", None))

    def reply_marks(self) -> tuple[float | None, float | None]:
        return (1.0, 2.0)

    async def close(self, reason: str) -> None:
        self.calls.append(("close", reason))


async def test_calls_are_held_then_replayed_in_order_then_pass_through() -> None:
    real = Recorder()
    held = HeldSink(real)
    await held.stt("hello")
    await held.emotion("happy")
    await held.say("Hi.", np.zeros(10, np.int16), 16000)
    assert real.calls == [] and held.held_calls == 3 and not held.released
    await held.release()
    await held.end_reply()
    assert real.calls == [("stt", "hello"), ("emotion", "happy"), ("say", "Hi."), ("end", None)]
    assert held.released and held.reply_marks() == (1.0, 2.0)


async def test_waiting_for_playback_waits_for_the_release() -> None:
    real = Recorder()
    held = HeldSink(real)
    waiter = asyncio.create_task(held.wait_played())
    await asyncio.sleep(0)
    assert not waiter.done() and real.calls == []
    await held.release()
    await waiter
    assert real.calls == [("wait", None)]


async def test_abort_while_held_drops_everything_and_sends_nothing() -> None:
    real = Recorder()
    held = HeldSink(real)
    await held.stt("hello")
    await held.abort()
    await held.release()
    assert real.calls == []
    await held.abort()
    assert real.calls == [("abort", None)]
