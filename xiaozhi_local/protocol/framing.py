"""Binary audio frames of the WebSocket transport, versions 1, 2 and 3 (protocol.md §2.3).

Every binary WebSocket frame carries exactly one Opus packet, in both directions, with the
layout picked by the device's binary protocol version (the `Protocol-Version` header and the
hello `version`, §2.1/§2.2):

* **v1** - the frame *is* the Opus packet; there is no header and no timestamp.
* **v2** - a 16-byte big-endian header: version u16, type u16, reserved u32, timestamp u32
  (ms), payload_size u32, then the payload.
* **v3** - a 4-byte header: type u8, reserved u8, payload_size u16 (BE), then the payload.

Choices made here, all in the direction of "accept what real peers send":

* The v2 ``version`` field is **not checked** on receive. The device writes 2, but the MQTT
  gateway writes 0 and xinnan writes 1 at byte 0 (§3.6); only offsets 8 and 12 matter.
* The ``type`` fields (v2 and v3) are ignored on receive, like the firmware does (§2.3).
  We always write 0 (OPUS) and reserved bytes as 0.
* ``payload_size`` must equal the bytes actually present after the header. A shorter or
  longer frame is a malformed frame (close code 1007); the firmware would trust the field,
  but a server has no reason to guess.
* A zero-length payload is returned as-is (an empty :class:`AudioFrame`); the caller decides
  whether to drop it. It is never an error at this layer.
* Timestamps are u32 milliseconds; :func:`encode_frame` reduces them modulo 2**32 (xinnan
  sends wall-clock ms mod 2**32, §2.3). v1 and v3 carry no timestamp, so it decodes as 0.
* Frames larger than :data:`MAX_FRAME_BYTES` are refused with close code 1009 before any
  parsing. The device's WebSocket client cannot send a frame above 65535 bytes anyway (§2.1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from xiaozhi_local.errors import ProtocolError

__all__ = [
    "MAX_FRAME_BYTES",
    "V2_HEADER",
    "V3_HEADER",
    "AudioFrame",
    "BinaryVersion",
    "FrameCodec",
    "decode_frame",
    "encode_frame",
    "max_payload_bytes",
    "negotiate_version",
]

MAX_FRAME_BYTES: Final = 65536
"""Largest binary frame (header + payload) accepted or produced, in bytes."""

V2_HEADER: Final = struct.Struct(">HHIII")  # version, type, reserved, timestamp, payload_size
V3_HEADER: Final = struct.Struct(">BBH")  # type, reserved, payload_size

_OPUS_TYPE: Final = 0
_V2_VERSION_FIELD: Final = 2  # what the device writes at offset 0 (§2.3)
_U32: Final = 1 << 32

CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_INVALID_PAYLOAD: Final = 1007
CLOSE_TOO_BIG: Final = 1009


class BinaryVersion(IntEnum):
    """The binary protocol versions defined by the firmware (§2.3)."""

    V1 = 1
    V2 = 2
    V3 = 3


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One decoded binary frame: an Opus packet and its timestamp (0 when the layout has none)."""

    payload: bytes
    timestamp_ms: int = 0


def _check_version(version: int) -> BinaryVersion:
    # bool is an int subclass; True must not silently mean v1.
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError(
            f"unsupported binary protocol version {version!r}",
            close_code=CLOSE_PROTOCOL_ERROR,
        )
    try:
        return BinaryVersion(version)
    except ValueError:
        raise ProtocolError(
            f"unsupported binary protocol version {version}",
            close_code=CLOSE_PROTOCOL_ERROR,
        ) from None


def max_payload_bytes(version: int) -> int:
    """The largest Opus payload that fits in one frame of ``version`` (§2.3)."""
    v = _check_version(version)
    if v is BinaryVersion.V1:
        return MAX_FRAME_BYTES
    if v is BinaryVersion.V2:
        return MAX_FRAME_BYTES - V2_HEADER.size
    return min(MAX_FRAME_BYTES - V3_HEADER.size, 0xFFFF)


def encode_frame(version: int, opus: bytes, timestamp_ms: int = 0) -> bytes:
    """Build one binary frame carrying ``opus`` in the layout of ``version`` (§2.3).

    Raises :class:`ProtocolError` (1002) for an unsupported version, and :class:`ValueError`
    for a payload that does not fit or a negative timestamp (those are our own bugs, not the
    peer's).
    """
    v = _check_version(version)
    data = bytes(opus)
    if timestamp_ms < 0:
        raise ValueError(f"timestamp_ms must be >= 0, got {timestamp_ms}")
    limit = max_payload_bytes(v)
    if len(data) > limit:
        raise ValueError(f"opus payload of {len(data)} bytes exceeds the v{v} limit of {limit}")
    if v is BinaryVersion.V1:
        return data
    if v is BinaryVersion.V2:
        header = V2_HEADER.pack(_V2_VERSION_FIELD, _OPUS_TYPE, 0, timestamp_ms % _U32, len(data))
        return header + data
    return V3_HEADER.pack(_OPUS_TYPE, 0, len(data)) + data


def decode_frame(version: int, data: bytes | bytearray | memoryview) -> AudioFrame:
    """Parse one received binary frame of ``version`` into an :class:`AudioFrame` (§2.3).

    Errors (all :class:`ProtocolError`): unsupported version → 1002; frame above
    :data:`MAX_FRAME_BYTES` → 1009; truncated header or ``payload_size`` that does not match
    the frame length → 1007.
    """
    v = _check_version(version)
    raw = bytes(data)
    if len(raw) > MAX_FRAME_BYTES:
        raise ProtocolError(
            f"binary frame of {len(raw)} bytes exceeds {MAX_FRAME_BYTES}",
            close_code=CLOSE_TOO_BIG,
        )
    if v is BinaryVersion.V1:
        return AudioFrame(payload=raw, timestamp_ms=0)
    if v is BinaryVersion.V2:
        header = V2_HEADER
        if len(raw) < header.size:
            raise ProtocolError(
                f"truncated v2 header: {len(raw)} of {header.size} bytes",
                close_code=CLOSE_INVALID_PAYLOAD,
            )
        _ver, _type, _reserved, timestamp, size = header.unpack_from(raw)
    else:
        header = V3_HEADER
        if len(raw) < header.size:
            raise ProtocolError(
                f"truncated v3 header: {len(raw)} of {header.size} bytes",
                close_code=CLOSE_INVALID_PAYLOAD,
            )
        _type, _reserved, size = header.unpack_from(raw)
        timestamp = 0
    actual = len(raw) - header.size
    if size != actual:
        raise ProtocolError(
            f"v{v} payload_size {size} does not match {actual} payload bytes",
            close_code=CLOSE_INVALID_PAYLOAD,
        )
    return AudioFrame(payload=raw[header.size :], timestamp_ms=timestamp)


def negotiate_version(header_value: str | None, hello_version: int | None) -> int:
    """Pick the binary version of a connection (§2.1, §2.2, §8 item 6).

    The firmware sends the same number in the ``Protocol-Version`` header and the hello
    ``version``. When both are present the header wins, because it is known at upgrade time,
    before any binary frame. A missing or blank header falls back to the hello, then to 1
    (the browser test page sends neither). A present but unusable value → ProtocolError 1002.
    """
    if header_value is not None and header_value.strip():
        text = header_value.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 3):
            raise ProtocolError(
                f"bad Protocol-Version header {text[:32]!r}",
                close_code=CLOSE_PROTOCOL_ERROR,
            )
        return int(_check_version(int(text)))
    if hello_version is not None:
        return int(_check_version(hello_version))
    return int(BinaryVersion.V1)


@dataclass(frozen=True, slots=True)
class FrameCodec:
    """:func:`encode_frame` / :func:`decode_frame` bound to one connection's version."""

    version: int

    def __post_init__(self) -> None:
        _check_version(self.version)

    def encode(self, opus: bytes, timestamp_ms: int = 0) -> bytes:
        """Frame one outgoing Opus packet."""
        return encode_frame(self.version, opus, timestamp_ms)

    def decode(self, data: bytes | bytearray | memoryview) -> AudioFrame:
        """Unframe one incoming binary frame."""
        return decode_frame(self.version, data)
