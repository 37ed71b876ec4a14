"""Everything a session sends that must stay in order with its audio (protocol.md §2.4, §8 item 7).

One queue per session, drained by one task: ``tts start`` before the first audio of a reply,
``sentence_start`` before each sentence's frames, opus frames paced to real time by the
:class:`~xiaozhi_local.audio.pacer.Pacer` (at most a 5-frame lead, far below the device's
40-packet queue), and ``tts stop`` once the last frame has had time to play. An abort drops
whatever is queued, stops the frame in flight and sends ``tts stop`` at once.

Transport-agnostic: it is given two send callables and a clock, so its schedule is tested
without sockets or sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio.clock import Clock, MonotonicClock
from ..audio.opus import OpusEncoder
from ..audio.pacer import Pacer
from ..audio.resample import Resampler
from ..pipeline.conversation import PCM
from ..protocol.audio_params import DOWNLINK_DEFAULT, AudioParams
from ..protocol.framing import FrameCodec
from ..protocol.outgoing import build_tts_sentence_start, build_tts_start, build_tts_stop, to_json

log = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
SendBytes = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True)
class _Json:
    message: dict[str, Any]


@dataclass(frozen=True)
class _Audio:
    source: PCM | AsyncIterable[PCM]
    sample_rate: int


@dataclass(frozen=True)
class _Stop:
    pass


@dataclass(frozen=True)
class _Barrier:
    done: asyncio.Future[None]


_Item = _Json | _Audio | _Stop | _Barrier


class Downlink:
    def __init__(self, send_text: SendText, send_bytes: SendBytes, codec: FrameCodec, session_id: str,
                 params: AudioParams = DOWNLINK_DEFAULT, clock: Clock | None = None):
        self._send_text = send_text
        self._send_bytes = send_bytes
        self._codec = codec
        self._session_id = session_id
        self.params = params
        self.clock = clock or MonotonicClock()
        self.pacer = Pacer(frame_ms=params.frame_duration)
        self._encoder = OpusEncoder(sample_rate=params.sample_rate, frame_ms=params.frame_duration)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.in_reply = False
        self.frames_sent = 0
        self.first_frame_at: float | None = None
        """Clock time the current (or last) reply's first audio frame went out."""
        self.last_frame_at: float | None = None

    # ---- the conversation's side ------------------------------------------------------
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"downlink-{self._session_id}")

    async def say(self, text: str, audio: PCM | AsyncIterable[PCM], sample_rate: int) -> None:
        self._queue.put_nowait(_Json(build_tts_sentence_start(text, self._session_id)))
        self._queue.put_nowait(_Audio(audio, sample_rate))

    async def end_reply(self) -> None:
        self._queue.put_nowait(_Stop())

    async def wait_played(self) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Barrier(done))
        await done

    async def abort(self) -> None:
        """Drop queued audio, stop the frame in flight, send ``tts stop`` if a reply was open."""
        await self._stop_and_drop()
        self._encoder.reset()
        self.pacer.reset()
        if self.in_reply:
            self.in_reply = False
            await self._send_text(to_json(build_tts_stop(self._session_id)))
        self._task = None
        self.start()

    async def close(self) -> None:
        await self._stop_and_drop()

    async def _stop_and_drop(self) -> None:
        """Stop the sending task and empty the queue, releasing anyone waiting on it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Barrier) and not item.done.done():
                item.done.set_result(None)

    # ---- the sending task --------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, _Json):
                await self._open_reply()
                await self._send_text(to_json(item.message))
            elif isinstance(item, _Audio):
                await self._open_reply()
                await self._play(item)
            elif isinstance(item, _Stop):
                await self.clock.sleep(self.pacer.drain_time(self.clock.now()))
                if self.in_reply:
                    await self._send_text(to_json(build_tts_stop(self._session_id)))
                    self.in_reply = False
                self.pacer.reset()
            else:
                await self.clock.sleep(self.pacer.drain_time(self.clock.now()))
                if not item.done.done():
                    item.done.set_result(None)

    async def _open_reply(self) -> None:
        if not self.in_reply:
            self.in_reply = True
            self.first_frame_at = self.last_frame_at = None
            self.pacer.reset()
            await self._send_text(to_json(build_tts_start(self._session_id)))

    async def _play(self, item: _Audio) -> None:
        resampler = Resampler(item.sample_rate, self.params.sample_rate)
        chunks = _one(item.source) if isinstance(item.source, np.ndarray) else item.source
        async for chunk in chunks:
            for packet in self._encoder.push(resampler.process(np.asarray(chunk, dtype=np.int16))):
                await self._send_frame(packet)
        tail = resampler.flush()
        for packet in [*self._encoder.push(tail), *self._encoder.flush()]:
            await self._send_frame(packet)

    async def _send_frame(self, packet: bytes) -> None:
        delay = self.pacer.delay_for_next(self.clock.now())
        if delay > 0:
            await self.clock.sleep(delay)
        # v2 carries a timestamp of our choosing: wall-clock ms mod 2^32, as xinnan does (§2.3).
        await self._send_bytes(self._codec.encode(packet, int(time.time() * 1000) & 0xFFFFFFFF))
        now = self.clock.now()
        self.pacer.sent(now)
        self.frames_sent += 1
        if self.first_frame_at is None:
            self.first_frame_at = now
        self.last_frame_at = now


async def _one(pcm: PCM) -> AsyncIterable[PCM]:
    yield pcm
