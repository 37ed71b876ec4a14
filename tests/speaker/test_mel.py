"""The numpy mel front end (checked against librosa by scripts/dev/make_ge2e_fixture.py)."""

from __future__ import annotations

import numpy as np
import pytest

from xiaozhi_local.speaker.mel import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE, mel_filterbank, mel_spectrogram


def _tone(hz: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_filterbank_is_triangular_and_ordered() -> None:
    fb = mel_filterbank()
    assert fb.shape == (N_MELS, N_FFT // 2 + 1) and fb.dtype == np.float32
    assert (fb >= 0).all()
    peaks = fb.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] > peaks[0]
    for row in fb:  # one contiguous run of non-zero weights rising then falling
        nonzero = np.flatnonzero(row)
        assert np.array_equal(nonzero, np.arange(nonzero[0], nonzero[-1] + 1))


def test_filterbank_uses_slaney_area_normalisation() -> None:
    fb = mel_filterbank()
    bin_hz = SAMPLE_RATE / N_FFT
    areas = fb.sum(axis=1) * bin_hz  # each triangle is 2 / (its width in Hz) high: unit area
    np.testing.assert_allclose(areas, 1.0, rtol=0.05)


def test_frames_follow_librosa_centering() -> None:
    for n in (100, 16000, 16159, 16160, 48000):
        assert mel_spectrogram(np.zeros(n, dtype=np.float32)).shape == (1 + n // HOP_LENGTH, N_MELS)


@pytest.mark.parametrize("hz", [300.0, 1000.0, 3000.0])
def test_a_tone_lands_in_the_band_around_its_frequency(hz: float) -> None:
    mel = mel_spectrogram(_tone(hz))
    band = int(mel[5:-5].mean(axis=0).argmax())
    assert mel_filterbank()[band, round(hz / (SAMPLE_RATE / N_FFT))] > 0


def test_power_not_log_spectrogram() -> None:
    quiet, loud = mel_spectrogram(_tone(500.0, amplitude=0.1)), mel_spectrogram(_tone(500.0, amplitude=0.2))
    np.testing.assert_allclose(loud[5:-5].sum(), 4 * quiet[5:-5].sum(), rtol=1e-4)
