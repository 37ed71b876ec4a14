"""The downlink's schedule, with an injected clock: ordering, pacing, drain, abort."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from xiaozhi_local.audio.clock import FakeClock
from xiaozhi_local.protocol.framing import FrameCodec, decode_frame
from xiaozhi_local.server.downlink import Downlink


class Recorder:
    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.events: list[tuple[float, str, Any]] = []

    async def text(self, data: str) -> None:
        msg = json.loads(data)
        self.events.append((self.clock.now(), f"{msg['type']}:{msg.get('state', '')}", msg))

    async def binary(self, data: bytes) -> None:
        self.events.append((self.clock.now(), "frame", data))

    def frames(self) -> list[float]:
        return [t for t, kind, _ in self.events if kind == "frame"]

    def kinds(self) -> list[str]:
        out: list[str] = []
        for _, kind, _ in self.events:
            if kind != "frame" or (out and out[-1] != "frame") or not out:
                out.append(kind)
        return out


def make(version: int = 3) -> tuple[Downlink, Recorder, FakeClock]:
    clock = FakeClock()
    rec = Recorder(clock)
    downlink = Downlink(rec.text, rec.binary, FrameCodec(version), "s1", clock=clock)
    downlink.start()
    return downlink, rec, clock


def tone(seconds: float, rate: int = 24000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


async def test_reply_order_pacing_and_drain() -> None:
    downlink, rec, _ = make()
    await downlink.say("First.", tone(0.6), 24000)
    await downlink.say("Second.", tone(1.2, 16000), 16000)  # resampled to 24 kHz
    await downlink.end_reply()
    await downlink.wait_played()
    assert rec.kinds() == ["tts:start", "tts:sentence_start", "frame", "tts:sentence_start", "frame", "tts:stop"]
    frames = rec.frames()
    assert len(frames) == 10 + 20  # 60 ms frames
    # 5 frames go at once, then one per 60 ms: never more than 300 ms ahead of real time.
    assert frames[:5] == [0.0] * 5
    for k, t in enumerate(frames):
        assert t >= (k - 4) * 0.06 - 1e-9
        assert t - (k - 4) * 0.06 < 1e-6 or k < 5
    stop_at = next(t for t, kind, _ in rec.events if kind == "tts:stop")
    assert abs(stop_at - (frames[-1] + 0.06 * 5 + 0.12)) < 1e-6  # last frame played + 2-frame margin
    for _, kind, data in rec.events:
        if kind == "frame":
            assert decode_frame(3, data).payload  # well-formed v3 frames
    await downlink.close()


async def test_streamed_sentence_and_slow_producer_rebases_without_burst() -> None:
    downlink, rec, clock = make(1)

    async def slow() -> AsyncIterator[np.ndarray]:
        yield tone(0.3)
        await clock.sleep(2.0)  # TTS thinking: the device runs dry
        yield tone(0.6)

    await downlink.say("Streamed.", slow(), 24000)
    await downlink.end_reply()
    await downlink.wait_played()
    frames = rec.frames()
    assert len(frames) == 15
    after_gap = [t for t in frames if t >= 2.0]
    # After the gap: a fresh pre-buffer of at most 5 frames, then real time again.
    assert after_gap[:5] == [after_gap[0]] * 5 and after_gap[5] > after_gap[0]
    await downlink.close()


async def test_abort_drops_queued_audio_and_sends_tts_stop() -> None:
    downlink, rec, _ = make()
    await downlink.say("A long sentence.", tone(5.0), 24000)
    await downlink.end_reply()
    while len(rec.frames()) < 8:
        await asyncio.sleep(0)
    await downlink.abort()
    sent = len(rec.frames())
    assert sent < 15
    assert rec.kinds()[-1] == "tts:stop"
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(rec.frames()) == sent  # nothing more after the abort
    # The next reply starts cleanly with its own tts start and pre-buffer.
    await downlink.say("Next.", tone(0.3), 24000)
    await downlink.end_reply()
    await downlink.wait_played()
    assert rec.kinds()[-4:] == ["tts:start", "tts:sentence_start", "frame", "tts:stop"]
    await downlink.close()
