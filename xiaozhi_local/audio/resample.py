"""Sample-rate conversion with soxr (libsoxr, "HQ" quality by default).

`resample` converts a whole buffer; `Resampler` converts a stream chunk by chunk (TTS
output, microphone input) with the filter state carried across chunks, so chunk borders
leave no clicks. Both keep the dtype: int16 in → int16 out (soxr clips and rounds),
float32 in → float32 out; int32 and float64 are passed through as well.

Arrays are mono ``(n,)`` or interleaved-by-row multichannel ``(n, channels)``.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped, unused-ignore]

from xiaozhi_local.errors import AudioError

__all__ = ["QUALITIES", "SUPPORTED_DTYPES", "Resampler", "resample"]

SUPPORTED_DTYPES: Final[tuple[str, ...]] = ("int16", "int32", "float32", "float64")
"""Sample types soxr handles natively."""

QUALITIES: Final[tuple[str, ...]] = ("QQ", "LQ", "MQ", "HQ", "VHQ")
"""soxr quality recipes, fastest to best."""


def _check_rate(name: str, rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise AudioError(f"{name} must be a positive integer sample rate, got {rate!r}")
    return int(rate)


def _check_quality(quality: str) -> str:
    if quality not in QUALITIES:
        raise AudioError(f"unknown resample quality {quality!r}; use one of {QUALITIES}")
    return quality


def _check_array(pcm: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if not isinstance(pcm, np.ndarray):
        raise AudioError(f"expected a numpy array of samples, got {type(pcm).__name__}")
    if pcm.dtype.name not in SUPPORTED_DTYPES:
        raise AudioError(f"cannot resample samples of dtype {pcm.dtype}; use one of {SUPPORTED_DTYPES}")
    if pcm.ndim not in (1, 2):
        raise AudioError(f"expected samples shaped (n,) or (n, channels), got {pcm.shape}")
    return pcm


def resample(pcm: npt.NDArray[Any], src_rate: int, dst_rate: int, *, quality: str = "HQ") -> npt.NDArray[Any]:
    """Resample `pcm` from `src_rate` to `dst_rate` Hz, keeping its dtype.

    Returns `pcm` itself (no copy) when the rates are equal. The output length is
    ``round(len(pcm) * dst_rate / src_rate)`` as soxr computes it.
    """
    src = _check_rate("src_rate", src_rate)
    dst = _check_rate("dst_rate", dst_rate)
    _check_quality(quality)
    pcm = _check_array(pcm)
    if src == dst:
        return pcm
    if pcm.shape[0] == 0:
        return pcm.copy()
    out: npt.NDArray[Any] = soxr.resample(np.ascontiguousarray(pcm), src, dst, quality=quality)
    return out


class Resampler:
    """Streaming resampler: feed chunks with `process`, end with `flush`.

    With equal rates it is a pass-through. After `flush` (or `reset`) it can be reused for
    a new stream.
    """

    def __init__(
        self,
        src_rate: int,
        dst_rate: int,
        *,
        channels: int = 1,
        dtype: str = "int16",
        quality: str = "HQ",
    ) -> None:
        """Prepare a stream converting `src_rate` → `dst_rate` for `dtype` samples."""
        self.src_rate = _check_rate("src_rate", src_rate)
        self.dst_rate = _check_rate("dst_rate", dst_rate)
        if channels < 1:
            raise AudioError(f"channels must be >= 1, got {channels}")
        if dtype not in SUPPORTED_DTYPES:
            raise AudioError(f"unsupported dtype {dtype!r}; use one of {SUPPORTED_DTYPES}")
        self.channels = channels
        self.dtype = np.dtype(dtype)
        self.quality = _check_quality(quality)
        self._stream: soxr.ResampleStream | None = None
        self._new_stream()

    @property
    def passthrough(self) -> bool:
        """True when the rates are equal and chunks are returned unchanged."""
        return self.src_rate == self.dst_rate

    def _new_stream(self) -> None:
        if self.passthrough:
            self._stream = None
            return
        self._stream = soxr.ResampleStream(
            self.src_rate, self.dst_rate, self.channels, dtype=self.dtype.name, quality=self.quality
        )

    def _check_chunk(self, chunk: npt.NDArray[Any]) -> npt.NDArray[Any]:
        chunk = _check_array(chunk)
        if chunk.dtype != self.dtype:
            raise AudioError(f"this Resampler takes {self.dtype} samples, got {chunk.dtype}")
        got_channels = 1 if chunk.ndim == 1 else chunk.shape[1]
        if got_channels != self.channels:
            raise AudioError(f"this Resampler takes {self.channels} channel(s), got {got_channels}")
        return np.ascontiguousarray(chunk)

    def _empty(self) -> npt.NDArray[Any]:
        shape: tuple[int, ...] = (0,) if self.channels == 1 else (0, self.channels)
        return np.zeros(shape, dtype=self.dtype)

    def process(self, chunk: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Resample one chunk; the output may be shorter (filter delay) until `flush`."""
        chunk = self._check_chunk(chunk)
        if self._stream is None:
            return chunk
        out: npt.NDArray[Any] = self._stream.resample_chunk(chunk, last=False)
        return out

    def flush(self) -> npt.NDArray[Any]:
        """Return the samples still held in the filter and start a new stream."""
        if self._stream is None:
            return self._empty()
        out: npt.NDArray[Any] = self._stream.resample_chunk(self._empty(), last=True)
        self._new_stream()
        if self.channels == 1 and out.ndim == 2:
            out = out.reshape(-1)
        return out

    def reset(self) -> None:
        """Drop any buffered samples (e.g. on abort) and start a new stream."""
        self._new_stream()
