"""WAV reading (PCM 8/16/24/32, float, extensible, multichannel) and writing."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from xiaozhi_local.audio.wav import parse_wav, read_wav, read_wav_16k, wav_bytes, write_wav
from xiaozhi_local.errors import AudioError

PCM, FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def make_wav(
    frames: npt.NDArray[np.generic],
    rate: int,
    tag: int,
    bits: int,
    *,
    extensible: bool = False,
    extra_chunks: bytes = b"",
    data_size: int | None = None,
) -> bytes:
    """Build a WAV file by hand. `frames` is (n, channels) already in the target encoding."""
    channels = frames.shape[1]
    block = channels * bits // 8
    if bits == 24:
        as32 = frames.astype("<i4").reshape(-1)
        raw = b"".join(int(v).to_bytes(4, "little", signed=True)[:3] for v in as32)
    else:
        raw = frames.tobytes()
    fmt = struct.pack("<HHIIHH", EXTENSIBLE if extensible else tag, channels, rate, rate * block, block, bits)
    if extensible:
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + GUID_TAIL
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunks
    size = len(raw) if data_size is None else data_size
    body += b"data" + struct.pack("<I", size) + raw
    return b"RIFF" + struct.pack("<I", len(body)) + body


def ramp(n: int = 4000) -> npt.NDArray[np.int16]:
    """Full-scale-ish int16 test signal with both signs and extremes."""
    x = (np.sin(np.linspace(0, 40 * np.pi, n)) * 32767).astype(np.int16)
    x[:3] = [-32768, 32767, 0]
    return x


def test_pcm16_roundtrip_exact(tmp_path: Path) -> None:
    x = ramp()
    path = tmp_path / "a.wav"
    write_wav(path, x, 16000)
    with wave.open(str(path)) as w:  # a plain stdlib-readable file
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
    y, rate = read_wav(path)
    assert rate == 16000
    assert y.dtype == np.int16
    np.testing.assert_array_equal(y, x)


def test_pcm8_unsigned() -> None:
    x = ramp()
    u8 = ((x.astype(np.int32) >> 8) + 128).astype(np.uint8).reshape(-1, 1)
    y, _ = parse_wav(make_wav(u8, 8000, PCM, 8))
    assert np.max(np.abs(y.astype(np.int32) - x.astype(np.int32))) < 256
    assert y.min() == -32768


@pytest.mark.parametrize("extensible", [False, True])
def test_pcm24(extensible: bool) -> None:
    x = ramp()
    i24 = (x.astype(np.int32) << 8).reshape(-1, 1) + 0x7F  # low byte must be dropped
    y, rate = parse_wav(make_wav(i24, 22050, PCM, 24, extensible=extensible))
    assert rate == 22050
    np.testing.assert_array_equal(y, x)


def test_pcm32() -> None:
    x = ramp()
    i32 = ((x.astype(np.int64) << 16) + 0x1234).astype("<i4").reshape(-1, 1)
    y, _ = parse_wav(make_wav(i32, 16000, PCM, 32))
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize(("dtype", "bits"), [("<f4", 32), ("<f8", 64)])
@pytest.mark.parametrize("extensible", [False, True])
def test_float(dtype: str, bits: int, extensible: bool) -> None:
    x = ramp()
    x[0] = -32767  # float scaling is symmetric
    f = (x.astype(np.float64) / 32767).astype(dtype).reshape(-1, 1)
    f[1] = 1.5  # out of range: clipped
    y, _ = parse_wav(make_wav(f, 48000, FLOAT, bits, extensible=extensible))
    assert y[1] == 32767
    np.testing.assert_array_equal(y[2:], x[2:])


def test_stereo_and_multichannel_downmix() -> None:
    left = np.full(100, 1000, dtype=np.int16)
    right = np.full(100, -3000, dtype=np.int16)
    y, _ = parse_wav(make_wav(np.stack([left, right], axis=1), 16000, PCM, 16))
    assert y.shape == (100,)
    assert np.all(y == -1000)
    six = np.tile(np.arange(6, dtype=np.int16) * 600, (50, 1))
    y6, _ = parse_wav(make_wav(six, 16000, PCM, 16, extensible=True))
    assert np.all(y6 == 1500)


def test_write_stereo_roundtrip(tmp_path: Path) -> None:
    stereo = np.stack([ramp(), np.zeros(4000, dtype=np.int16)], axis=1)
    write_wav(tmp_path / "s.wav", stereo, 24000)
    with wave.open(str(tmp_path / "s.wav")) as w:
        assert w.getnchannels() == 2
    y, rate = read_wav(tmp_path / "s.wav")
    assert rate == 24000
    expected = np.round(stereo.astype(np.float64).mean(axis=1)).astype(np.int16)
    np.testing.assert_array_equal(y, expected)


def test_44k1_to_16k_keeps_duration(tmp_path: Path) -> None:
    n = 44100 * 2 + 37
    t = np.arange(n) / 44100
    x = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    write_wav(tmp_path / "cd.wav", x, 44100)
    y = read_wav_16k(tmp_path / "cd.wav")
    assert y.dtype == np.int16
    assert abs(len(y) - n * 16000 / 44100) <= 1
    spectrum = np.abs(np.fft.rfft(y.astype(np.float64) * np.hanning(len(y))))
    assert abs(np.argmax(spectrum) * 16000 / len(y) - 440) < 2


def test_read_wav_16k_no_resample_when_already_16k(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", ramp(), 16000)
    np.testing.assert_array_equal(read_wav_16k(tmp_path / "a.wav"), ramp())


def test_odd_chunk_padding_and_streaming_data_size() -> None:
    x = ramp(101).reshape(-1, 1)
    odd = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"  # 3 bytes + pad byte
    y, _ = parse_wav(make_wav(x, 16000, PCM, 16, extra_chunks=odd))
    np.testing.assert_array_equal(y, x[:, 0])
    y2, _ = parse_wav(make_wav(x, 16000, PCM, 16, data_size=0xFFFFFFFF))
    np.testing.assert_array_equal(y2, x[:, 0])


def test_wav_bytes_roundtrip() -> None:
    y, rate = parse_wav(wav_bytes(ramp(), 8000))
    assert rate == 8000
    np.testing.assert_array_equal(y, ramp())


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not a WAV"),
        (b"hello, this is plain text and not audio at all", "not a WAV"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(100), "not a WAV"),
        (b"RIFF\x10\x00\x00\x00AVI LIST", "not a WAV"),
        (b"RIFX" + bytes(40), "RIFX"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no 'fmt '"),
    ],
)
def test_non_wav_raises_audio_error(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=match):
        read_wav(path)


def test_unsupported_encodings() -> None:
    alaw = np.zeros((10, 1), dtype=np.uint8)
    with pytest.raises(AudioError, match="A-law"):
        parse_wav(make_wav(alaw, 8000, 6, 8))
    with pytest.raises(AudioError, match="unsupported"):
        parse_wav(make_wav(np.zeros((10, 1), dtype="<f2"), 8000, FLOAT, 16))
    no_data = make_wav(np.zeros((10, 1), dtype=np.int16), 8000, PCM, 16)
    no_data = no_data[: no_data.index(b"data")]
    with pytest.raises(AudioError, match="no 'data'"):
        parse_wav(no_data)


def test_missing_file_and_bad_write(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="cannot read"):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="int16"):
        write_wav(tmp_path / "f.wav", np.zeros(10, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="cannot write"):
        write_wav(tmp_path / "no" / "dir.wav", np.zeros(10, dtype=np.int16), 16000)
