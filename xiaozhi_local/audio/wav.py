"""Read and write WAV files (RIFF/WAVE), numpy in and out.

`parse_wav` is a small RIFF chunk parser (stdlib `wave` only handles integer PCM) that
understands:

* ``WAVE_FORMAT_PCM`` (1): 8-bit unsigned, 16/24/32-bit signed little-endian;
* ``WAVE_FORMAT_IEEE_FLOAT`` (3): 32- and 64-bit float;
* ``WAVE_FORMAT_EXTENSIBLE`` (0xFFFE) whose sub-format GUID is PCM or IEEE float;

with any channel count (averaged to mono). Everything else (A-law, µ-law, ADPCM, RIFX,
RF64, MP3-in-WAV, not a WAV at all) raises `AudioError` naming what was found.
Integer samples are scaled by their container size (MSB-justified); floats are clipped to
[-1, 1] and scaled by 32767. A ``data`` chunk whose size overruns the file (streamed WAVs
write 0 or 0xFFFFFFFF) is read to the end of the file.
"""

from __future__ import annotations

import io
import os
import struct
import wave
from pathlib import Path
from typing import Any, BinaryIO, Final

import numpy as np
import numpy.typing as npt

from xiaozhi_local.audio.resample import resample
from xiaozhi_local.errors import AudioError

__all__ = ["parse_wav", "read_wav", "read_wav_16k", "wav_bytes", "write_wav"]

FORMAT_PCM: Final = 0x0001
FORMAT_IEEE_FLOAT: Final = 0x0003
FORMAT_EXTENSIBLE: Final = 0xFFFE
_FORMAT_NAMES: Final = {
    0x0002: "MS ADPCM",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0055: "MPEG Layer 3",
}
# Tail shared by the KSDATAFORMAT_SUBTYPE_* GUIDs; the first 2 bytes are the format tag.
_GUID_TAIL: Final = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

Int16Array = npt.NDArray[np.int16]
PathLike = str | os.PathLike[str]


def _format_name(tag: int) -> str:
    return _FORMAT_NAMES.get(tag, f"format tag 0x{tag:04x}")


def _chunks(data: bytes) -> dict[bytes, bytes]:
    """Split the body of a RIFF/WAVE file into its first chunk of each id."""
    if len(data) < 12:
        raise AudioError("not a WAV file: shorter than a RIFF header")
    magic, _, form = struct.unpack_from("<4sI4s", data, 0)
    if magic in (b"RIFX", b"RF64", b"BW64"):
        raise AudioError(f"unsupported WAV container {magic.decode()} (only little-endian RIFF)")
    if magic != b"RIFF" or form != b"WAVE":
        raise AudioError(f"not a WAV file: starts with {data[:12]!r}")
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(data):
        cid, size = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8 : pos + 8 + size]  # truncated to the file end if size overruns
        chunks.setdefault(cid, body)
        if cid == b"data" and pos + 8 + size > len(data):
            break
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    return chunks


def _fmt(body: bytes) -> tuple[int, int, int, int, int]:
    """Return (format tag, channels, rate, block align, bits) from a ``fmt `` chunk."""
    if len(body) < 16:
        raise AudioError("invalid WAV file: 'fmt ' chunk too short")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body, 0)
    if tag == FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise AudioError("invalid WAV file: WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk too short")
        guid = body[24:40]
        if guid[2:] != _GUID_TAIL:
            raise AudioError(f"unsupported WAV encoding: extensible sub-format {guid.hex()}")
        tag = struct.unpack_from("<H", guid, 0)[0]
    if tag not in (FORMAT_PCM, FORMAT_IEEE_FLOAT):
        raise AudioError(f"unsupported WAV encoding: {_format_name(tag)} (need PCM or float)")
    if channels < 1 or rate < 1:
        raise AudioError(f"invalid WAV file: {channels} channels at {rate} Hz")
    return tag, channels, rate, block_align, bits


def _to_int16(raw: bytes, tag: int, bits: int, channels: int) -> Int16Array:
    """Decode interleaved little-endian samples to int16 shaped (frames, channels)."""
    width = bits // 8
    if bits % 8 or width == 0:
        raise AudioError(f"unsupported WAV sample size: {bits} bits")
    frame = width * channels
    raw = raw[: len(raw) - len(raw) % frame]
    if tag == FORMAT_IEEE_FLOAT:
        if width not in (4, 8):
            raise AudioError(f"unsupported float WAV sample size: {bits} bits")
        f = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float64)
        f = np.nan_to_num(f, nan=0.0, posinf=1.0, neginf=-1.0)
        out = np.round(np.clip(f, -1.0, 1.0) * 32767.0).astype(np.int16)
    elif width == 1:
        out = ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif width == 2:
        out = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        # Keep the two most significant bytes of each little-endian 24-bit sample.
        out = (b[:, 1].astype(np.uint16) | (b[:, 2].astype(np.uint16) << 8)).view(np.int16)
    elif width == 4:
        out = (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16)
    else:
        raise AudioError(f"unsupported PCM WAV sample size: {bits} bits")
    shaped: Int16Array = out.reshape(-1, channels)
    return shaped


def _downmix(frames: Int16Array) -> Int16Array:
    if frames.shape[1] == 1:
        mono: Int16Array = np.ascontiguousarray(frames[:, 0])
        return mono
    mean: npt.NDArray[np.float64] = frames.astype(np.float64).mean(axis=1)
    mixed: Int16Array = np.round(mean).astype(np.int16)
    return mixed


def parse_wav(data: bytes) -> tuple[Int16Array, int]:
    """Decode WAV file bytes to (int16 mono samples, sample rate)."""
    chunks = _chunks(data)
    if b"fmt " not in chunks:
        raise AudioError("invalid WAV file: no 'fmt ' chunk")
    if b"data" not in chunks:
        raise AudioError("invalid WAV file: no 'data' chunk")
    tag, channels, rate, block_align, bits = _fmt(chunks[b"fmt "])
    if block_align and block_align % channels == 0 and block_align // channels * 8 >= bits:
        bits = block_align // channels * 8  # container size, e.g. 12-bit samples in 16 bits
    frames = _to_int16(chunks[b"data"], tag, bits, channels)
    return _downmix(frames), rate


def read_wav(path: PathLike) -> tuple[Int16Array, int]:
    """Read a WAV file as (int16 mono samples, sample rate); see the module docstring."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AudioError(f"cannot read WAV file {os.fspath(path)!r}: {exc.strerror or exc}") from exc
    try:
        return parse_wav(data)
    except AudioError as exc:
        raise AudioError(f"{os.fspath(path)}: {exc}") from exc


def read_wav_16k(path: PathLike) -> Int16Array:
    """Read a WAV file as int16 mono samples at 16 kHz (the ASR rate), resampling if needed."""
    pcm, rate = read_wav(path)
    return resample(pcm, rate, 16000)


def _as_int16(pcm: npt.NDArray[Any]) -> Int16Array:
    arr = np.asarray(pcm)
    if arr.dtype != np.int16:
        raise AudioError(f"write_wav takes int16 samples, got {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise AudioError(f"expected samples shaped (n,) or (n, channels), got {arr.shape}")
    return arr


def wav_bytes(pcm_int16: npt.NDArray[np.int16], rate: int) -> bytes:
    """Encode int16 samples, shaped (n,) or (n, channels), as 16-bit PCM WAV file bytes."""
    buf = io.BytesIO()
    _write(buf, _as_int16(pcm_int16), rate)
    return buf.getvalue()


def write_wav(path: PathLike, pcm_int16: npt.NDArray[np.int16], rate: int) -> None:
    """Write int16 samples, shaped (n,) or (n, channels), as a 16-bit PCM WAV file."""
    arr = _as_int16(pcm_int16)
    try:
        with open(path, "wb") as fh:
            _write(fh, arr, rate)
    except OSError as exc:
        raise AudioError(f"cannot write WAV file {os.fspath(path)!r}: {exc.strerror or exc}") from exc


def _write(fh: BinaryIO, arr: Int16Array, rate: int) -> None:
    if rate <= 0:
        raise AudioError(f"invalid sample rate {rate}")
    channels = 1 if arr.ndim == 1 else arr.shape[1]
    with wave.open(fh, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(np.ascontiguousarray(arr).astype("<i2").tobytes())
