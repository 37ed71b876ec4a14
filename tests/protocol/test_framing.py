"""Binary audio frames v1/v2/v3 (protocol.md §2.3)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xiaozhi_local.errors import ProtocolError
from xiaozhi_local.protocol.framing import (
    MAX_FRAME_BYTES,
    AudioFrame,
    FrameCodec,
    decode_frame,
    encode_frame,
    max_payload_bytes,
    negotiate_version,
)


def test_max_frame_bytes_is_64_kib() -> None:
    assert MAX_FRAME_BYTES == 65536


def test_max_payload_per_version() -> None:
    assert max_payload_bytes(1) == 65536
    assert max_payload_bytes(2) == 65536 - 16
    assert max_payload_bytes(3) == 65532


def test_v1_is_the_raw_packet() -> None:
    assert encode_frame(1, b"\x01\x02\x03", timestamp_ms=999) == b"\x01\x02\x03"
    assert decode_frame(1, b"\xfc\xff\xfe") == AudioFrame(b"\xfc\xff\xfe", 0)


def test_v2_header_layout_is_big_endian_16_bytes() -> None:
    frame = encode_frame(2, b"abc", timestamp_ms=0x01020304)
    expected_header = bytes.fromhex("00020000000000000102030400000003")
    assert frame == expected_header + b"abc"


def test_v3_example_from_protocol_md() -> None:
    # §2.3: "v3 carrying a 120-byte packet: 00 00 00 78 <120 bytes>"
    payload = bytes(range(120))
    frame = encode_frame(3, payload)
    assert frame[:4] == bytes.fromhex("00000078")
    assert frame[4:] == payload
    assert decode_frame(3, frame) == AudioFrame(payload, 0)


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("size", [0, 1, 2, 120, 255, 256, 4000])
def test_round_trip_sizes(version: int, size: int) -> None:
    payload = bytes((i * 7 + 3) % 256 for i in range(size))
    ts = 123456 if version == 2 else 0
    decoded = decode_frame(version, encode_frame(version, payload, ts))
    assert decoded.payload == payload
    assert decoded.timestamp_ms == ts


@pytest.mark.parametrize("version", [1, 2, 3])
def test_round_trip_at_the_largest_payload(version: int) -> None:
    payload = b"\xaa" * max_payload_bytes(version)
    frame = encode_frame(version, payload, 7)
    assert len(frame) == MAX_FRAME_BYTES
    assert decode_frame(version, frame).payload == payload


@pytest.mark.parametrize("version", [1, 2, 3])
def test_encode_refuses_one_byte_too_many(version: int) -> None:
    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(version, b"\x00" * (max_payload_bytes(version) + 1))


def test_v2_timestamp_wraps_modulo_2_32() -> None:
    frame = encode_frame(2, b"x", timestamp_ms=2**32 + 5)
    assert decode_frame(2, frame).timestamp_ms == 5
    top = encode_frame(2, b"x", timestamp_ms=2**32 - 1)
    assert decode_frame(2, top).timestamp_ms == 2**32 - 1


def test_negative_timestamp_is_our_bug() -> None:
    with pytest.raises(ValueError, match="timestamp"):
        encode_frame(2, b"x", timestamp_ms=-1)


@pytest.mark.parametrize("version_field", [0, 1, 2, 0xFFFF])
def test_v2_version_field_is_not_checked(version_field: int) -> None:
    # Device writes 2, the MQTT gateway 0, xinnan 1 (§3.6).
    frame = struct.pack(">HHIII", version_field, 0, 0, 42, 2) + b"hi"
    assert decode_frame(2, frame) == AudioFrame(b"hi", 42)


def test_v2_xinnan_style_header_decodes() -> None:
    # xinnan: [0]=1, [2:4]=len, [4:8]=sequence, [8:12]=timestamp, [12:16]=len (§3.6).
    payload = b"\x11" * 300
    header = bytes([1, 0]) + struct.pack(">HIII", 300, 77, 9000, 300)
    assert decode_frame(2, header + payload) == AudioFrame(payload, 9000)


def test_type_fields_are_ignored_on_receive() -> None:
    assert decode_frame(3, bytes([7, 9, 0, 1]) + b"z") == AudioFrame(b"z", 0)
    v2 = struct.pack(">HHIII", 2, 5, 123, 1, 1) + b"z"
    assert decode_frame(2, v2) == AudioFrame(b"z", 1)


@pytest.mark.parametrize(("version", "header"), [(2, 16), (3, 4)])
def test_truncated_headers_are_invalid_payload(version: int, header: int) -> None:
    for n in range(header):
        with pytest.raises(ProtocolError) as info:
            decode_frame(version, b"\x00" * n)
        assert info.value.close_code == 1007
        assert "truncated" in info.value.reason


@pytest.mark.parametrize("declared", [0, 9, 11, 1000])
def test_v2_payload_size_mismatch(declared: int) -> None:
    frame = struct.pack(">HHIII", 2, 0, 0, 0, declared) + b"0123456789"
    with pytest.raises(ProtocolError) as info:
        decode_frame(2, frame)
    assert info.value.close_code == 1007
    assert f"payload_size {declared}" in info.value.reason


@pytest.mark.parametrize("declared", [0, 9, 11, 0xFFFF])
def test_v3_payload_size_mismatch(declared: int) -> None:
    frame = struct.pack(">BBH", 0, 0, declared) + b"0123456789"
    with pytest.raises(ProtocolError) as info:
        decode_frame(3, frame)
    assert info.value.close_code == 1007


@pytest.mark.parametrize("version", [1, 2, 3])
def test_oversize_frames_are_too_big(version: int) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(version, b"\x00" * (MAX_FRAME_BYTES + 1))
    assert info.value.close_code == 1009


@pytest.mark.parametrize("version", [0, 4, -1, 256, True])
def test_unsupported_versions_are_protocol_errors(version: int) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(version, b"abc")
    assert info.value.close_code == 1002
    with pytest.raises(ProtocolError) as info2:
        encode_frame(version, b"abc")
    assert info2.value.close_code == 1002


def test_empty_v2_and_v3_payloads_are_returned_not_rejected() -> None:
    assert decode_frame(2, encode_frame(2, b"", 3)) == AudioFrame(b"", 3)
    assert decode_frame(3, b"\x00\x00\x00\x00") == AudioFrame(b"", 0)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    frame = encode_frame(3, b"opus")
    assert decode_frame(3, bytearray(frame)).payload == b"opus"
    assert decode_frame(3, memoryview(frame)).payload == b"opus"


def test_negotiate_version() -> None:
    assert negotiate_version(None, None) == 1
    assert negotiate_version("", None) == 1
    assert negotiate_version(None, 3) == 3
    assert negotiate_version("2", 2) == 2
    assert negotiate_version(" 3 ", 1) == 3  # header wins
    for bad in ("4", "x", "2.0", "-1", "9" * 5000):
        with pytest.raises(ProtocolError) as info:
            negotiate_version(bad, None)
        assert info.value.close_code == 1002
        assert len(info.value.reason.encode()) <= 123
    with pytest.raises(ProtocolError):
        negotiate_version(None, 7)


def test_frame_codec_binds_the_version() -> None:
    codec = FrameCodec(2)
    assert codec.decode(codec.encode(b"pkt", 10)) == AudioFrame(b"pkt", 10)
    with pytest.raises(ProtocolError):
        FrameCodec(5)


@settings(max_examples=200, deadline=None)
@given(version=st.integers(min_value=-1, max_value=5), data=st.binary(max_size=600))
def test_arbitrary_bytes_decode_or_raise_protocol_error(version: int, data: bytes) -> None:
    try:
        frame = decode_frame(version, data)
    except ProtocolError as exc:
        assert exc.close_code in (1002, 1007, 1009)
        assert len(exc.reason.encode()) <= 123
    else:
        assert isinstance(frame, AudioFrame)
        assert version in (1, 2, 3)
        assert frame.payload == data[{1: 0, 2: 16, 3: 4}[version] :]


@settings(max_examples=200, deadline=None)
@given(
    version=st.sampled_from([1, 2, 3]),
    payload=st.binary(max_size=3000),
    ts=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_round_trip_property(version: int, payload: bytes, ts: int) -> None:
    frame = decode_frame(version, encode_frame(version, payload, ts))
    assert frame.payload == payload
    assert frame.timestamp_ms == (ts if version == 2 else 0)
