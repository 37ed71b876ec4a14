"""The ``audio_params`` object of the hello handshake (protocol.md §2.2, §2.4).

Both hellos carry ``{"format","sample_rate","channels","frame_duration"}``. The device's
describes its uplink (stock firmware: Opus 16 kHz mono 60 ms; py-xiaozhi: 20 ms on x86). The
server's configures the device's **downlink decoder**, so it must describe what the server
really encodes (§2.2 "xinnan quirk (do not copy)"): Opus 24 kHz mono 60 ms by default.

Parsing is tolerant: missing keys take defaults, and the defaults depend on the direction.
:meth:`AudioParams.from_dict` parses a **device** hello (missing keys → the stock uplink, 16 kHz);
:meth:`AudioParams.from_server_hello` parses a **server** hello (missing keys → the firmware's
downlink defaults, 24 kHz / 60 ms, §2.2). Value checks live in :func:`audio_params_problem` /
:func:`validate_audio_params` so that a hello without (or with odd) params can still be
accepted when the caller wants.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from xiaozhi_local.errors import ProtocolError

__all__ = [
    "DOWNLINK_DEFAULT",
    "SUPPORTED_FRAME_DURATIONS_MS",
    "SUPPORTED_SAMPLE_RATES",
    "UPLINK_DEFAULT",
    "AudioParams",
    "audio_params_problem",
    "validate_audio_params",
]

SUPPORTED_SAMPLE_RATES: Final = frozenset({8000, 12000, 16000, 24000, 48000})
"""The rates Opus can decode at natively."""

SUPPORTED_FRAME_DURATIONS_MS: Final = frozenset({10, 20, 40, 60, 80, 100, 120})
"""Opus frame durations (whole milliseconds) a Xiaozhi peer may announce."""

CLOSE_POLICY: Final = 1008
CLOSE_UNSUPPORTED: Final = 1003


def _as_int(obj: Mapping[str, Any], key: str, default: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool):
        raise ProtocolError(f"audio_params.{key} must be an integer", close_code=CLOSE_POLICY)
    if isinstance(value, int):
        return value
    # JSON has one number type; accept 16000.0 but not 16000.5.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ProtocolError(f"audio_params.{key} must be an integer", close_code=CLOSE_POLICY)


@dataclass(frozen=True, slots=True)
class AudioParams:
    """One side's Opus stream description (§2.2). Defaults are the stock uplink (§2.4)."""

    format: str = "opus"
    sample_rate: int = 16000
    channels: int = 1
    frame_duration: int = 60

    @property
    def samples_per_frame(self) -> int:
        """PCM samples per channel in one frame (e.g. 960 for 16 kHz / 60 ms)."""
        return self.sample_rate * self.frame_duration // 1000

    def to_dict(self) -> dict[str, Any]:
        """The wire shape, keys in firmware order."""
        return {
            "format": self.format,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frame_duration": self.frame_duration,
        }

    @classmethod
    def from_dict(cls, obj: object, *, defaults: AudioParams | None = None) -> AudioParams:
        """Parse a received ``audio_params`` object, filling missing keys from ``defaults``.

        ``defaults`` is the stock **uplink** (:data:`UPLINK_DEFAULT`, 16 kHz) unless given: right
        for a device hello, wrong for a server hello (use :meth:`from_server_hello`). A non-object
        or a wrongly typed member → ProtocolError 1008. Values are *not* range-checked here; see
        :func:`validate_audio_params`.
        """
        if not isinstance(obj, Mapping):
            raise ProtocolError("audio_params must be an object", close_code=CLOSE_POLICY)
        base = defaults if defaults is not None else cls()  # slots=True: no class-level defaults
        fmt = obj.get("format", base.format)
        if not isinstance(fmt, str):
            raise ProtocolError("audio_params.format must be a string", close_code=CLOSE_POLICY)
        return cls(
            format=fmt,
            sample_rate=_as_int(obj, "sample_rate", base.sample_rate),
            channels=_as_int(obj, "channels", base.channels),
            frame_duration=_as_int(obj, "frame_duration", base.frame_duration),
        )

    @classmethod
    def from_server_hello(cls, obj: object) -> AudioParams:
        """Parse a **server** hello's ``audio_params``: missing keys take the downlink defaults
        the firmware uses (:data:`DOWNLINK_DEFAULT`: Opus 24 kHz mono 60 ms, §2.2)."""
        return cls.from_dict(obj, defaults=DOWNLINK_DEFAULT)


UPLINK_DEFAULT: Final = AudioParams()
"""What stock firmware sends: Opus 16 kHz mono 60 ms (§2.4)."""

DOWNLINK_DEFAULT: Final = AudioParams(sample_rate=24000)
"""What we encode and announce by default: Opus 24 kHz mono 60 ms (§2.2, §8 item 5)."""


def _num(value: int) -> str:
    # Peers can send 4000-digit integers; keep close reasons under 123 bytes.
    text = str(value)
    return text if len(text) <= 12 else text[:12] + "..."


def audio_params_problem(params: AudioParams) -> str | None:
    """Why ``params`` is unusable, or None when it is fine (Opus, mono, known rate/duration)."""
    if params.format != "opus":
        return f"unsupported audio format {params.format[:32]!r} (only opus)"
    if params.sample_rate not in SUPPORTED_SAMPLE_RATES:
        return f"unsupported sample_rate {_num(params.sample_rate)}"
    if params.channels != 1:
        return f"unsupported channels {_num(params.channels)} (only mono)"
    if params.frame_duration not in SUPPORTED_FRAME_DURATIONS_MS:
        return f"unsupported frame_duration {_num(params.frame_duration)} ms"
    return None


def validate_audio_params(params: AudioParams) -> AudioParams:
    """Return ``params`` if usable, else raise ProtocolError 1003 (unsupported data)."""
    problem = audio_params_problem(params)
    if problem is not None:
        raise ProtocolError(problem, close_code=CLOSE_UNSUPPORTED)
    return params
