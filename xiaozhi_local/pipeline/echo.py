"""The echo conversation: repeats what the user said. A diagnostic, not an assistant.

``xiaozhi serve --echo`` uses it to check a device's microphone, speaker and network with no
models at all: every utterance is played back as heard (after a short chime), with its
length as the subtitle. Utterances end the way the device's listening mode says
(protocol.md §2.5): ``listen stop`` in manual mode; in auto and realtime mode, after
trailing silence, detected with a plain energy threshold (no VAD model needed).
"""

from __future__ import annotations

import logging

import numpy as np

from ..protocol.types import ListenMode
from .capture import UtteranceCapture
from .conversation import PCM, UPLINK_RATE, DeviceTools, ReplySink, SessionInfo
from .endpoint import EndpointConfig

log = logging.getLogger(__name__)

ENERGY_THRESHOLD_DBFS = -45.0
PREROLL_MS = 300
MAX_SECONDS = 30


def dbfs(pcm: PCM) -> float:
    if pcm.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))))
    return 20 * np.log10(max(rms, 1e-9) / 32768.0)


def chime(sample_rate: int = UPLINK_RATE, ms: int = 150) -> PCM:
    t = np.arange(int(sample_rate * ms / 1000)) / sample_rate
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)
    return (0.25 * 32767 * np.sin(2 * np.pi * 880 * t) * fade).astype(np.int16)


class EchoConversation:
    def __init__(self, info: SessionInfo, sink: ReplySink, tools: DeviceTools,
                 endpoint: EndpointConfig | None = None):
        self.info = info
        self.sink = sink
        self.tools = tools
        config = endpoint or EndpointConfig(end_silence_ms=600, max_utterance_ms=MAX_SECONDS * 1000)
        self.capture = UtteranceCapture(config, preroll_ms=PREROLL_MS)
        self.mode: ListenMode | None = None
        self.buffer: list[PCM] = []
        self.turns = 0

    async def on_listen_start(self, mode: ListenMode) -> None:
        self.mode = mode
        self.buffer = []
        self.capture.reset()

    async def on_listen_stop(self) -> None:
        if self.mode is ListenMode.MANUAL and self.buffer:
            await self._reply(np.concatenate(self.buffer))
        self.buffer = []
        self.mode = None

    async def on_audio(self, pcm: PCM) -> None:
        if self.mode is None:
            return
        if self.mode is ListenMode.MANUAL:
            self.buffer.append(pcm)
            return
        update = self.capture.feed(pcm, [dbfs(pcm) > ENERGY_THRESHOLD_DBFS])
        if update.utterance is not None:
            await self._reply(update.utterance.pcm)

    async def on_detect(self, text: str) -> None:
        await self.sink.stt(text)
        await self.sink.emotion("happy", "🙂")
        await self.sink.say(f"You said: {text}" if text else "Hello!", chime(), UPLINK_RATE)
        await self.sink.end_reply()

    async def on_abort(self, reason: str | None) -> None:
        self.buffer = []
        self.capture.reset()

    async def on_idle(self) -> None:
        log.info("session %s: echo idle", self.info.session_id)

    async def close(self) -> None:
        self.buffer = []

    async def _reply(self, heard: PCM) -> None:
        self.turns += 1
        seconds = heard.size / UPLINK_RATE
        await self.sink.stt(f"({seconds:.1f} s of audio)")
        await self.sink.emotion("happy", "🙂")
        await self.sink.say("Here is what I heard.", chime(), UPLINK_RATE)
        await self.sink.say(f"{seconds:.1f} seconds.", heard, UPLINK_RATE)
        await self.sink.end_reply()
