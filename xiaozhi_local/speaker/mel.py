"""Resemblyzer's mel spectrogram in numpy (what ``librosa.feature.melspectrogram`` computes for it).

Resemblyzer 0.1.4 (``audio.wav_to_mel_spectrogram``, ``hparams.py``) calls librosa with
``sr=16000, n_fft=400 (25 ms), hop_length=160 (10 ms), n_mels=40`` and librosa's defaults:
a periodic Hann window of ``n_fft`` samples, ``center=True`` with zero padding of ``n_fft // 2``
on both sides (librosa ≥ 0.10; older versions padded by reflection, which only changes the first
and last frame), a power spectrogram (``|STFT|²``) and a mel filterbank on the Slaney mel scale
with Slaney area normalisation from 0 Hz to Nyquist. The result is *not* log-compressed.
`scripts/dev/make_ge2e_fixture.py` checks these functions against librosa.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["HOP_LENGTH", "N_FFT", "N_MELS", "SAMPLE_RATE", "mel_filterbank", "mel_spectrogram"]

SAMPLE_RATE: Final = 16000
N_FFT: Final = 400
"""25 ms window."""
HOP_LENGTH: Final = 160
"""10 ms hop."""
N_MELS: Final = 40

# Slaney's "auditory toolbox" mel scale: linear below 1 kHz, logarithmic above.
_F_SP: Final = 200.0 / 3
_MIN_LOG_HZ: Final = 1000.0
_MIN_LOG_MEL: Final = _MIN_LOG_HZ / _F_SP
_LOG_STEP: Final = float(np.log(6.4) / 27.0)


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    mel = hz / _F_SP
    high = hz >= _MIN_LOG_HZ
    mel[high] = _MIN_LOG_MEL + np.log(hz[high] / _MIN_LOG_HZ) / _LOG_STEP
    return mel


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    hz = mel * _F_SP
    high = mel >= _MIN_LOG_MEL
    hz[high] = _MIN_LOG_HZ * np.exp(_LOG_STEP * (mel[high] - _MIN_LOG_MEL))
    return hz


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = 0.0, fmax: float | None = None) -> npt.NDArray[np.float32]:
    """``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm="slaney")``: (n_mels, 1 + n_fft // 2)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges = np.array([fmin, fmax], dtype=np.float64)
    mel_edges = _hz_to_mel(edges)
    mel_f = _mel_to_hz(np.linspace(mel_edges[0], mel_edges[1], n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


@cache
def _window() -> npt.NDArray[np.float32]:
    n = np.arange(N_FFT)
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)).astype(np.float32)  # periodic Hann
    window.flags.writeable = False
    return window


@cache
def _filterbank_t() -> npt.NDArray[np.float32]:
    fb = np.ascontiguousarray(mel_filterbank().T)
    fb.flags.writeable = False
    return fb


def mel_spectrogram(wav: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Power mel spectrogram of a 16 kHz float waveform: (1 + len(wav) // 160, 40) float32."""
    wav = np.asarray(wav, dtype=np.float32)
    padded = np.pad(wav, N_FFT // 2, mode="constant")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    spectrum = np.fft.rfft(frames * _window(), axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    # einsum's own loop, not BLAS: OpenBLAS's thread pool spins on this small product and, with ASR busy
    # on the other cores, made the whole embedding 2-3x slower in CPU time.
    return np.einsum("tf,fm->tm", power, _filterbank_t(), optimize=False)
