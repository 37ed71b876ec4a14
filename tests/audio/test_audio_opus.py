"""Opus encoder/decoder against the real libopus (no mocks)."""

from __future__ import annotations

import random

import numpy as np
import numpy.typing as npt
import pytest

from xiaozhi_local.audio.opus import (
    SAMPLE_RATES,
    OpusDecoder,
    OpusEncoder,
    packet_duration_ms,
)
from xiaozhi_local.audio.resample import resample
from xiaozhi_local.errors import AudioError


def tone(freq: float, rate: int, seconds: float, amp: int = 12000) -> npt.NDArray[np.int16]:
    """A sine wave as int16 samples."""
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * amp).astype(np.int16)


def dominant_hz(pcm: npt.NDArray[np.int16], rate: int) -> float:
    """Frequency of the strongest FFT bin (Hann window)."""
    x = pcm.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def best_alignment(
    decoded: npt.NDArray[np.int16], ref: npt.NDArray[np.int16], rate: int
) -> tuple[float, float]:
    """(correlation, SNR dB) of `decoded` vs `ref` at the best codec delay in 0..20 ms."""
    y = decoded.astype(np.float64)
    r = ref.astype(np.float64)
    span = len(r) - int(0.03 * rate)
    best = (-1.0, -np.inf)
    for lag in range(int(0.02 * rate)):
        a = y[lag : lag + span]
        b = r[:span]
        corr = float(np.corrcoef(a, b)[0, 1])
        if corr > best[0]:
            snr = float(10 * np.log10(np.sum(b**2) / np.sum((a - b) ** 2)))
            best = (corr, snr)
    return best


@pytest.mark.parametrize("out_rate", [16000, 24000])
def test_tone_roundtrip_24k_to_decoder_rate(out_rate: int) -> None:
    src = tone(440, 24000, 1.0)
    enc = OpusEncoder()  # 24 kHz, 60 ms, 24 kbit/s
    packets = enc.encode_all(src)
    assert len(packets) == 17  # 1.0 s -> 16.67 frames, last one padded
    dec = OpusDecoder(out_rate)
    out = np.concatenate([dec.decode(p) for p in packets])
    assert out.dtype == np.int16
    assert out.shape == (17 * out_rate * 60 // 1000,)
    assert abs(dominant_hz(out, out_rate) - 440) < 3
    corr, snr = best_alignment(out, resample(src, 24000, out_rate), out_rate)
    assert corr > 0.99
    assert snr > 25


@pytest.mark.parametrize("frame_ms", [2.5, 5, 10, 20, 40, 60, 80, 100, 120])
def test_decode_any_frame_duration_from_16k_encoder(frame_ms: float) -> None:
    enc = OpusEncoder(16000, frame_ms=frame_ms, bitrate=32000, application="voip")
    packets = enc.encode_all(tone(300, 16000, 0.48))
    dec16 = OpusDecoder(16000)
    dec48 = OpusDecoder(48000)
    for p in packets:
        assert packet_duration_ms(p) == frame_ms
        assert dec16.decode(p).shape == (int(16 * frame_ms),)
        assert dec48.decode(p).shape == (int(48 * frame_ms),)


def test_120ms_packet_at_48k_fills_the_5760_sample_buffer() -> None:
    enc = OpusEncoder(48000, frame_ms=120)
    (packet,) = enc.encode_all(tone(1000, 48000, 0.12))
    dec = OpusDecoder(48000)
    assert dec.max_frame_samples == 5760
    assert dec.decode(packet).shape == (5760,)


def test_dtx_silence_packets_are_tiny_and_decode() -> None:
    enc = OpusEncoder(16000, frame_ms=60, complexity=0, application="voip", dtx=True)
    packets = enc.encode_all(np.zeros(16000 * 2, dtype=np.int16))
    tiny = [p for p in packets if len(p) <= 2]
    assert len(tiny) >= len(packets) // 2  # DTX kicks in after a few frames
    dec = OpusDecoder(16000)
    for p in packets:
        pcm = dec.decode(p)
        assert pcm.shape == (960,)
        assert int(np.max(np.abs(pcm.astype(np.int32)))) < 200


def test_empty_packet_conceals_last_duration() -> None:
    dec = OpusDecoder(16000)
    assert dec.decode(b"").shape == (0,)  # nothing to conceal yet
    enc = OpusEncoder(16000, frame_ms=20)
    dec.decode(enc.encode_all(tone(440, 16000, 0.02))[0])
    assert dec.decode(b"").shape == (320,)
    assert dec.conceal(960).shape == (960,)
    with pytest.raises(AudioError):
        dec.conceal(100)  # not a multiple of 2.5 ms
    dec.reset()
    assert dec.decode(b"").shape == (0,)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff",  # code 3 without its frame-count byte
        b"\x03",
        bytes([0xFB, 63]),  # 63 x 20 ms frames: over 120 ms
        bytes([0x0B, 0x00]),  # code 3 with zero frames
        b"\xfe\xff\xff\xff\xff",  # code 2 with a frame length past the end
    ],
)
def test_garbage_raises_audio_error(garbage: bytes) -> None:
    with pytest.raises(AudioError, match=r"^invalid opus packet: "):
        OpusDecoder(16000).decode(garbage)


def test_non_bytes_raise_audio_error() -> None:
    with pytest.raises(AudioError, match=r"^invalid opus packet: "):
        OpusDecoder().decode("not bytes")  # type: ignore[arg-type]


def test_random_bytes_never_raise_anything_but_audio_error() -> None:
    rng = random.Random(1234)
    dec = OpusDecoder(16000)
    decoded = rejected = 0
    for _ in range(2000):
        packet = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 60)))
        try:
            pcm = dec.decode(packet)
        except AudioError:
            rejected += 1
        else:
            decoded += 1
            assert pcm.dtype == np.int16
            assert 0 < pcm.shape[0] <= 1920
    assert decoded > 0 and rejected > 0


def test_stereo_decoder_shape() -> None:
    (packet,) = OpusEncoder(24000).encode_all(tone(440, 24000, 0.06))
    assert OpusDecoder(24000, channels=2).decode(packet).shape == (1440, 2)


def test_encode_requires_exactly_one_frame() -> None:
    enc = OpusEncoder(24000, frame_ms=60)
    assert enc.frame_samples == 1440
    assert enc.frame_bytes == 2880
    assert isinstance(enc.encode(np.zeros(1440, dtype=np.int16)), bytes)
    assert isinstance(enc.encode(bytes(2880)), bytes)
    with pytest.raises(AudioError, match="1440 samples"):
        enc.encode(np.zeros(1000, dtype=np.int16))
    with pytest.raises(AudioError, match="int16"):
        enc.encode(np.zeros(1440, dtype=np.float32))
    with pytest.raises(AudioError):
        enc.encode(bytes(2879))


def test_encode_all_pads_and_push_flush_matches() -> None:
    pcm = tone(440, 24000, 1.03)
    enc = OpusEncoder()
    assert enc.encode_all(np.zeros(0, dtype=np.int16)) == []
    n_all = len(enc.encode_all(pcm))
    assert n_all == -(-len(pcm) // 1440)
    streamed: list[bytes] = []
    stream = OpusEncoder()
    rng = random.Random(7)
    pos = 0
    while pos < len(pcm):
        step = rng.randint(1, 3000)
        streamed += stream.push(pcm[pos : pos + step])
        pos += step
    assert stream.pending_samples == len(pcm) % 1440
    streamed += stream.flush()
    assert stream.flush() == []
    assert len(streamed) == n_all
    dec = OpusDecoder(24000)
    total = sum(dec.decode(p).shape[0] for p in streamed)
    assert total == n_all * 1440


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sample_rate": 44100}, "sample rate"),
        ({"frame_ms": 30}, "frame duration"),
        ({"channels": 3}, "channels"),
        ({"complexity": 11}, "complexity"),
        ({"bitrate": 100}, "bitrate"),
        ({"application": "music"}, "application"),
    ],
)
def test_encoder_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(AudioError, match=match):
        OpusEncoder(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [11025, 22050, 44100, 0])
def test_decoder_rejects_bad_rates(rate: int) -> None:
    with pytest.raises(AudioError, match="sample rate"):
        OpusDecoder(rate)


def test_all_opus_rates_are_accepted() -> None:
    for rate in SAMPLE_RATES:
        OpusDecoder(rate)
        OpusEncoder(rate)


def test_packet_duration_ms_toc_parsing() -> None:
    assert packet_duration_ms(bytes([0xF8])) == 20  # CELT FB 20 ms, code 0
    assert packet_duration_ms(bytes([0xF9])) == 40  # code 1: two frames
    assert packet_duration_ms(bytes([0x1B, 0x02])) == 120  # SILK 60 ms, code 3, 2 frames
    with pytest.raises(AudioError):
        packet_duration_ms(b"")
    with pytest.raises(AudioError):
        packet_duration_ms(bytes([0x1B, 0x03]))  # 180 ms
