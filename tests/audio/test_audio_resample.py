"""soxr resampling: dtypes, lengths, frequency preservation, streaming."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from xiaozhi_local.audio.resample import Resampler, resample
from xiaozhi_local.errors import AudioError


def tone(rate: int, seconds: float = 1.0, freq: float = 440) -> npt.NDArray[np.float64]:
    """A unit sine as float64."""
    return np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)


def peak_hz(x: npt.NDArray[np.generic], rate: int) -> float:
    """Strongest FFT frequency."""
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


@pytest.mark.parametrize(("src", "dst"), [(24000, 16000), (16000, 24000), (44100, 16000), (8000, 48000)])
def test_int16_in_int16_out(src: int, dst: int) -> None:
    x = (tone(src) * 20000).astype(np.int16)
    y = resample(x, src, dst)
    assert y.dtype == np.int16
    assert abs(len(y) - len(x) * dst / src) <= 1
    assert abs(peak_hz(y, dst) - 440) < 2


def test_float32_in_float32_out() -> None:
    x = (tone(24000) * 0.5).astype(np.float32)
    y = resample(x, 24000, 16000)
    assert y.dtype == np.float32
    assert len(y) == 16000
    assert 0.45 < float(np.max(np.abs(y))) < 0.55


def test_equal_rates_is_a_noop() -> None:
    x = np.arange(100, dtype=np.int16)
    assert resample(x, 16000, 16000) is x


def test_empty_and_stereo() -> None:
    assert resample(np.zeros(0, dtype=np.int16), 16000, 24000).shape == (0,)
    st = np.zeros((1600, 2), dtype=np.float32)
    assert resample(st, 16000, 8000).shape == (800, 2)


def test_bad_input_raises_audio_error() -> None:
    with pytest.raises(AudioError, match="dtype"):
        resample(np.zeros(10, dtype=np.int8), 16000, 8000)
    with pytest.raises(AudioError, match="src_rate"):
        resample(np.zeros(10, dtype=np.int16), 0, 8000)
    with pytest.raises(AudioError, match="quality"):
        resample(np.zeros(10, dtype=np.int16), 16000, 8000, quality="best")
    with pytest.raises(AudioError, match="numpy array"):
        resample([1, 2, 3], 16000, 8000)  # type: ignore[arg-type]


def test_streaming_matches_one_shot() -> None:
    x = (tone(24000, 2.0) * 15000).astype(np.int16)
    one_shot = resample(x, 24000, 16000)
    rs = Resampler(24000, 16000)
    parts = [rs.process(x[i : i + 777]) for i in range(0, len(x), 777)]
    parts.append(rs.flush())
    streamed = np.concatenate(parts)
    assert streamed.dtype == np.int16
    assert abs(len(streamed) - len(one_shot)) <= 2
    n = min(len(streamed), len(one_shot))
    diff = np.abs(streamed[:n].astype(np.int32) - one_shot[:n].astype(np.int32))
    assert int(diff.max()) <= 2
    # After flush the resampler starts a new stream.
    again = np.concatenate([rs.process(x[:2400]), rs.flush()])
    assert abs(len(again) - 1600) <= 1


def test_streaming_passthrough_and_validation() -> None:
    rs = Resampler(16000, 16000)
    assert rs.passthrough
    x = np.arange(50, dtype=np.int16)
    np.testing.assert_array_equal(rs.process(x), x)
    assert rs.flush().shape == (0,)
    with pytest.raises(AudioError, match="int16"):
        Resampler(16000, 8000).process(np.zeros(10, dtype=np.float32))
    with pytest.raises(AudioError, match="channel"):
        Resampler(16000, 8000).process(np.zeros((10, 2), dtype=np.int16))
    with pytest.raises(AudioError, match="dtype"):
        Resampler(16000, 8000, dtype="uint8")


def test_streaming_stereo_float_and_reset() -> None:
    rs = Resampler(48000, 16000, channels=2, dtype="float32")
    x = np.zeros((4800, 2), dtype=np.float32)
    out = rs.process(x)
    assert out.ndim == 2 and out.shape[1] == 2
    rs.reset()
    total = rs.process(x).shape[0] + rs.flush().shape[0]
    assert abs(total - 1600) <= 1
