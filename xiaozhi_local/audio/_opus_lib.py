"""Opus helpers shared by the encoder and decoder.

Limits, validation, the lazy opuslib import, error text and TOC parsing. The public names
are re-exported by `xiaozhi_local.audio.opus`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

from xiaozhi_local.errors import AudioError

SAMPLE_RATES: Final[tuple[int, ...]] = (8000, 12000, 16000, 24000, 48000)
"""The only rates libopus encodes from and decodes to."""

ENCODER_FRAME_MS: Final[tuple[float, ...]] = (2.5, 5, 10, 20, 40, 60, 80, 100, 120)
"""Frame durations libopus (≥ 1.2) can encode."""

MAX_FRAME_MS: Final = 120
"""Longest audio one Opus packet can carry."""

MAX_PACKET_BYTES: Final = 4000
"""Output buffer for one encoded packet (libopus' recommended upper bound)."""

APPLICATIONS: Final[tuple[str, ...]] = ("voip", "audio", "restricted_lowdelay")

# TOC frame durations (ms) by configuration number, RFC 6716 §3.1.
_TOC_MS: Final[tuple[float, ...]] = (
    (10, 20, 40, 60) * 3  # SILK-only NB/MB/WB
    + (10, 20) * 2  # hybrid SWB/FB
    + (2.5, 5, 10, 20) * 4  # CELT-only NB/WB/SWB/FB
)


def load_opuslib() -> ModuleType:
    """Import opuslib lazily so a missing libopus becomes an actionable AudioError."""
    try:
        for sub in ("api.ctl", "api.decoder", "api.encoder", "api.info"):
            importlib.import_module(f"opuslib.{sub}")
        return importlib.import_module("opuslib")
    except Exception as exc:  # opuslib raises a bare Exception when libopus is missing
        raise AudioError(
            f"Opus is unavailable ({exc}); install the system library: apt-get install libopus0"
        ) from exc


def describe_error(exc: BaseException) -> str:
    """Return human text for an opuslib error (its `str` is the C strerror as a bytes repr)."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        text = load_opuslib().api.info.strerror(code)
        return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return str(exc) or type(exc).__name__


def check_rate(rate: int) -> int:
    if rate not in SAMPLE_RATES:
        raise AudioError(f"unsupported Opus sample rate {rate!r}; use one of {SAMPLE_RATES}")
    return int(rate)


def check_channels(channels: int) -> int:
    if channels not in (1, 2):
        raise AudioError(f"Opus supports 1 or 2 channels, got {channels!r}")
    return int(channels)


def packet_duration_ms(packet: bytes) -> float:
    """Audio duration of one Opus packet, from its TOC byte (RFC 6716 §3.1).

    Raises AudioError for an empty or structurally invalid packet (this checks the TOC and
    frame count only; libopus validates the rest when decoding).
    """
    if len(packet) == 0:
        raise AudioError("invalid opus packet: empty")
    toc = packet[0]
    frame_ms = _TOC_MS[toc >> 3]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code == 1:
        count = 2
    else:
        if len(packet) < 2:
            raise AudioError(f"invalid opus packet: code {code} packet of 1 byte")
        count = 2 if code == 2 else packet[1] & 0x3F
    duration = count * frame_ms
    if count == 0 or duration > MAX_FRAME_MS:
        raise AudioError(f"invalid opus packet: {count} frames of {frame_ms} ms")
    return duration
