"""Opus encode/decode for the Xiaozhi audio channel (protocol.md §2.3, §2.4).

Thin, typed wrappers over `opuslib` (ctypes bindings to the system ``libopus.so.0``; on
Debian/Ubuntu: ``apt-get install libopus0``).

* Uplink: devices send 16 kHz mono, normally 60 ms frames, VBR with DTX (silence comes as
  1-2 byte packets); other clients use 20 ms. `OpusDecoder` therefore sizes its buffer for
  the largest legal packet (120 ms) at its output rate and accepts every frame duration
  (2.5-120 ms) and every DTX packet. Anything libopus rejects raises
  ``AudioError("invalid opus packet: …")``, never another exception type.
* Downlink: `OpusEncoder` defaults to what the firmware is told in the server hello and
  what xinnan uses (§5.6): 24 kHz mono, 60 ms frames, 24 kbit/s, complexity 10.

Empty packets. ``OpusDecoder.decode(b"")`` means "this packet was lost": the decoder runs
packet-loss concealment for the duration of the last packet it decoded and returns that
many samples, so the timeline keeps its length. Before any packet has been decoded there
is nothing to conceal and an empty array is returned.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from xiaozhi_local.audio._opus_lib import (
    APPLICATIONS,
    ENCODER_FRAME_MS,
    MAX_FRAME_MS,
    MAX_PACKET_BYTES,
    SAMPLE_RATES,
    check_channels,
    check_rate,
    describe_error,
    load_opuslib,
    packet_duration_ms,
)
from xiaozhi_local.errors import AudioError

__all__ = [
    "ENCODER_FRAME_MS",
    "MAX_FRAME_MS",
    "SAMPLE_RATES",
    "OpusDecoder",
    "OpusEncoder",
    "packet_duration_ms",
]

Int16Array = npt.NDArray[np.int16]
PcmInput = bytes | bytearray | memoryview | npt.NDArray[Any]


class OpusEncoder:
    """Encode int16 PCM into Opus packets of a fixed frame duration.

    `encode` takes exactly one frame; `encode_all` splits a buffer into frames and pads
    the last partial one with silence; `push`/`flush` do the same across chunks of a
    stream (TTS output), carrying the remainder between calls.
    """

    def __init__(
        self,
        sample_rate: int = 24000,
        channels: int = 1,
        frame_ms: float = 60,
        bitrate: int = 24000,
        complexity: int = 10,
        *,
        application: str = "audio",
        vbr: bool = True,
        dtx: bool = False,
    ) -> None:
        """Create an encoder; every argument is validated (AudioError on a bad value)."""
        self.sample_rate = check_rate(sample_rate)
        self.channels = check_channels(channels)
        if frame_ms not in ENCODER_FRAME_MS:
            raise AudioError(f"unsupported Opus frame duration {frame_ms!r} ms; use {ENCODER_FRAME_MS}")
        if not 500 <= bitrate <= 512000:
            raise AudioError(f"Opus bitrate must be 500..512000 bit/s, got {bitrate!r}")
        if not 0 <= complexity <= 10:
            raise AudioError(f"Opus complexity must be 0..10, got {complexity!r}")
        if application not in APPLICATIONS:
            raise AudioError(f"unknown Opus application {application!r}; use one of {APPLICATIONS}")
        self.frame_ms = frame_ms
        self.bitrate = bitrate
        self.complexity = complexity
        self.dtx = dtx
        self.frame_samples: int = int(self.sample_rate * frame_ms) // 1000
        """Samples per channel in one frame."""
        self.frame_bytes: int = self.frame_samples * self.channels * 2
        """Bytes of int16 PCM in one frame."""
        lib = load_opuslib()
        self._api = lib.api
        try:
            self._enc = lib.Encoder(self.sample_rate, self.channels, application)
            self._enc.bitrate = bitrate
            self._enc.complexity = complexity
            self._enc.vbr = int(vbr)
            # opuslib's `dtx` property setter is broken (it calls get_dtx); use the ctl.
            lib.api.encoder.encoder_ctl(self._enc.encoder_state, lib.api.ctl.set_dtx, int(dtx))
        except lib.OpusError as exc:
            raise AudioError(f"cannot create Opus encoder: {describe_error(exc)}") from exc
        self._pending = b""

    def _as_bytes(self, pcm: PcmInput) -> bytes:
        if isinstance(pcm, np.ndarray):
            if pcm.dtype != np.int16:
                raise AudioError(f"Opus encoder takes int16 samples, got {pcm.dtype}")
            if pcm.ndim == 2 and pcm.shape[1] != self.channels:
                raise AudioError(f"expected {self.channels} channel(s), got array {pcm.shape}")
            if pcm.ndim not in (1, 2):
                raise AudioError(f"expected samples shaped (n,) or (n, channels), got {pcm.shape}")
            return np.ascontiguousarray(pcm).astype("<i2", copy=False).tobytes()
        if isinstance(pcm, (bytes, bytearray, memoryview)):
            data = bytes(pcm)
            if len(data) % (2 * self.channels):
                raise AudioError(f"PCM byte length {len(data)} is not a whole number of samples")
            return data
        raise AudioError(f"expected int16 PCM bytes or numpy array, got {type(pcm).__name__}")

    def _encode_frame(self, frame: bytes) -> bytes:
        try:
            packet: bytes = self._api.encoder.encode(
                self._enc.encoder_state, frame, self.frame_samples, MAX_PACKET_BYTES
            )
        except Exception as exc:  # opuslib.OpusError; wrapped so callers see one type
            raise AudioError(f"Opus encoding failed: {describe_error(exc)}") from exc
        return packet

    def encode(self, pcm: PcmInput) -> bytes:
        """Encode exactly one frame (`frame_samples` per channel) into one packet."""
        data = self._as_bytes(pcm)
        if len(data) != self.frame_bytes:
            raise AudioError(
                f"one {self.frame_ms} ms frame is {self.frame_samples} samples per channel "
                f"({self.frame_bytes} bytes), got {len(data)} bytes"
            )
        return self._encode_frame(data)

    def encode_all(self, pcm: PcmInput) -> list[bytes]:
        """Encode a whole buffer: one packet per frame, the last one padded with silence.

        Independent of the `push` buffer. An empty input gives no packets.
        """
        data = self._as_bytes(pcm)
        rest = len(data) % self.frame_bytes
        if rest:
            data += b"\x00" * (self.frame_bytes - rest)
        fb = self.frame_bytes
        return [self._encode_frame(data[i : i + fb]) for i in range(0, len(data), fb)]

    def push(self, pcm: PcmInput) -> list[bytes]:
        """Add a chunk of a stream; return the packets of every frame now complete."""
        data = self._pending + self._as_bytes(pcm)
        whole = len(data) - len(data) % self.frame_bytes
        self._pending = data[whole:]
        fb = self.frame_bytes
        return [self._encode_frame(data[i : i + fb]) for i in range(0, whole, fb)]

    def flush(self) -> list[bytes]:
        """End the stream: encode the pending partial frame padded with silence (if any)."""
        if not self._pending:
            return []
        data, self._pending = self._pending, b""
        return self.encode_all(data)

    @property
    def pending_samples(self) -> int:
        """Samples per channel buffered by `push` and not yet encoded."""
        return len(self._pending) // (2 * self.channels)

    def reset(self) -> None:
        """Drop buffered PCM and reset the codec state (new utterance, abort)."""
        self._pending = b""
        self._enc.reset_state()


class OpusDecoder:
    """Decode Opus packets of any legal duration (2.5-120 ms) to int16 PCM.

    Returns shape ``(n,)`` for mono and ``(n, channels)`` for stereo, at `sample_rate`.
    """

    def __init__(self, sample_rate: int = 16000, channels: int = 1) -> None:
        """Create a decoder producing `channels` at `sample_rate` (validated)."""
        self.sample_rate = check_rate(sample_rate)
        self.channels = check_channels(channels)
        self.max_frame_samples: int = self.sample_rate * MAX_FRAME_MS // 1000
        """Buffer size per channel: 120 ms (5760 samples at 48 kHz, 1920 at 16 kHz)."""
        lib = load_opuslib()
        self._api = lib.api
        try:
            self._dec = lib.Decoder(self.sample_rate, self.channels)
        except lib.OpusError as exc:
            raise AudioError(f"cannot create Opus decoder: {describe_error(exc)}") from exc
        self._last_samples = 0

    def _run(self, packet: bytes, frame_size: int) -> Int16Array:
        try:
            raw: bytes = self._api.decoder.decode(
                self._dec.decoder_state,
                packet,
                len(packet),
                frame_size,
                False,
                channels=self.channels,
            )
        except Exception as exc:  # opuslib.OpusError, ctypes errors: one type for callers
            raise AudioError(f"invalid opus packet: {describe_error(exc)}") from exc
        pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16)
        return pcm if self.channels == 1 else pcm.reshape(-1, self.channels)

    def decode(self, packet: bytes | bytearray | memoryview) -> Int16Array:
        """Decode one packet; an empty packet means "lost" (see the module docstring)."""
        if not isinstance(packet, (bytes, bytearray, memoryview)):
            raise AudioError(f"invalid opus packet: expected bytes, got {type(packet).__name__}")
        data = bytes(packet)
        if not data:
            return self.conceal()
        pcm = self._run(data, self.max_frame_samples)
        self._last_samples = pcm.shape[0]
        return pcm

    def conceal(self, samples: int | None = None) -> Int16Array:
        """Packet-loss concealment for `samples` per channel (default: the last duration).

        `samples` must be a multiple of 2.5 ms at `sample_rate`, at most 120 ms.
        """
        n = self._last_samples if samples is None else samples
        step = self.sample_rate // 400  # 2.5 ms
        if n == 0:
            shape: tuple[int, ...] = (0,) if self.channels == 1 else (0, self.channels)
            return np.zeros(shape, dtype=np.int16)
        if n < 0 or n % step or n > self.max_frame_samples:
            raise AudioError(f"cannot conceal {n} samples: need a multiple of {step}, ≤ 120 ms")
        return self._run(b"", n)

    def reset(self) -> None:
        """Reset the codec state (e.g. a new `listen start`)."""
        self._dec.reset_state()
        self._last_samples = 0
