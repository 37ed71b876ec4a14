"""The simulated microphone: a WAV streamed as stock-firmware uplink audio (protocol.md §2.4).

* :func:`load_speech` reads any WAV (any rate, channels averaged) and resamples it to 16 kHz;
  :func:`split_frames` cuts it into 60 ms frames of 960 samples (the last one zero-padded).
* :func:`uplink_encoder` is configured like ``AS_OPUS_ENC_CONFIG``: 16 kHz mono, 60 ms,
  VOIP application, complexity 0, VBR, DTX on, automatic bitrate (libopus ``OPUS_AUTO`` gives
  60·Fs/frame + Fs = 17 kbit/s here). During silence DTX makes packets of a few bytes.
* :class:`Microphone` sends one frame every 60 ms on the injected clock's grid, **only while
  the device's mic is on** (:attr:`DeviceModel.mic_on`: listening, or speaking in realtime
  mode). Queued speech goes first; once it is sent, silence follows in auto/realtime mode
  (the mic keeps streaming until the server answers), nothing in manual mode (the caller
  then sends ``listen stop``). If the mic turns off mid-speech (``tts start`` in auto mode)
  the rest of the speech is discarded and the turn is marked truncated.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from xiaozhi_local.audio.clock import Clock
from xiaozhi_local.audio.opus import OpusEncoder
from xiaozhi_local.audio.wav import read_wav_16k
from xiaozhi_local.errors import AudioError, SimulatorError
from xiaozhi_local.sim.device_state import DeviceModel

__all__ = ["FRAME_MS", "FRAME_SAMPLES", "Microphone", "load_speech", "split_frames", "uplink_encoder"]

FRAME_MS: Final = 60
FRAME_SAMPLES: Final = 16000 * FRAME_MS // 1000
AUTO_BITRATE: Final = 60 * 16000 // FRAME_SAMPLES + 16000  # libopus OPUS_AUTO for 16 kHz mono 60 ms
_SILENCE: Final = np.zeros(FRAME_SAMPLES, dtype=np.int16)

Frame = npt.NDArray[np.int16]


def load_speech(path: str | os.PathLike[str]) -> Frame:
    """A WAV file as 16 kHz mono int16; AudioError names the file and the problem."""
    pcm = read_wav_16k(path)
    if pcm.shape[0] == 0:
        raise AudioError(f"{os.fspath(path)}: the WAV file holds no audio")
    return pcm


def split_frames(pcm16k: Frame) -> list[Frame]:
    """Cut 16 kHz samples into 960-sample frames, zero-padding the last."""
    rest = pcm16k.shape[0] % FRAME_SAMPLES
    if rest:
        pcm16k = np.concatenate([pcm16k, np.zeros(FRAME_SAMPLES - rest, dtype=np.int16)])
    return [pcm16k[i : i + FRAME_SAMPLES] for i in range(0, pcm16k.shape[0], FRAME_SAMPLES)]


def uplink_encoder() -> OpusEncoder:
    """An encoder with the firmware's uplink settings (§2.4)."""
    return OpusEncoder(16000, 1, FRAME_MS, AUTO_BITRATE, 0, application="voip", vbr=True, dtx=True)


class Microphone:
    """Streams queued speech, then silence, while ``device.mic_on`` (see the module docstring)."""

    def __init__(
        self,
        device: DeviceModel,
        send: Callable[[bytes], Awaitable[None]],
        clock: Clock,
        *,
        fill_silence: bool,
    ) -> None:
        self.device = device
        self._send = send
        self.clock = clock
        self.fill_silence = fill_silence
        self.encoder = uplink_encoder()
        self.speech_done = asyncio.Event()
        self.frames_sent = 0
        self.error: SimulatorError | None = None
        self._pending: deque[Frame] = deque()
        self._wake = asyncio.Event()

    def say(self, frames: list[Frame]) -> None:
        """Queue one utterance; :attr:`speech_done` is set once it is all sent (or dropped)."""
        self._pending.extend(frames)
        self.speech_done.clear()
        if not frames:
            self.speech_done.set()
        self._wake.set()

    def wake(self) -> None:
        """The device's mic may have turned on: resume streaming."""
        self._wake.set()

    async def run(self) -> None:
        """The mic task; runs until cancelled or the channel fails."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self.device.mic_on:
                    await self._stream()
                if self._pending and not self.device.mic_on:
                    self._pending.clear()
                    self.device.turn.speech_truncated = True
                    self._speech_end()
        except SimulatorError as exc:  # the channel closed under us; the caller reports it
            self.error = exc
            self.speech_done.set()

    async def _stream(self) -> None:
        self.encoder.reset()
        start = self.clock.now()
        k = 0
        frame_s = FRAME_MS / 1000
        while self.device.mic_on:
            if self._pending:
                pcm, speech = self._pending.popleft(), True
            elif self.fill_silence:
                pcm, speech = _SILENCE, False
            else:
                return
            await self._send(self.encoder.encode(pcm))
            self.frames_sent += 1
            if speech:
                self.device.turn.speech_frames += 1
                if not self._pending:
                    self._speech_end()
            k += 1
            await self.clock.sleep(start + k * frame_s - self.clock.now())

    def _speech_end(self) -> None:
        turn = self.device.turn
        if turn.t_speech_end is None:
            turn.t_speech_end = self.clock.now()
        self.speech_done.set()
