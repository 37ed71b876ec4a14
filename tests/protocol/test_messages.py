"""Device → server parsing and server → device builders (protocol.md §2.2, §2.5, §2.6)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xiaozhi_local.errors import ProtocolError
from xiaozhi_local.protocol.messages import (
    DOWNLINK_DEFAULT,
    UPLINK_DEFAULT,
    Abort,
    AudioParams,
    Goodbye,
    Hello,
    Listen,
    ListenMode,
    ListenState,
    Mcp,
    MessageType,
    Ping,
    Unknown,
    audio_params_problem,
    build_stt,
    parse_client_message,
    to_json,
    validate_audio_params,
)

FIRMWARE_HELLO = (
    '{"type":"hello","version":1,'
    '"features":{"mcp":true,"aec":true,"glyph_push":true},'
    '"text_font":{"bundle":"noto-v1","charset":"common","size":20,"bpp":4},'
    '"transport":"websocket",'
    '"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}'
)


def _error(text: str | bytes, **kw: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(text, **kw)
    assert len(info.value.reason.encode()) <= 123
    return info.value


# --- hello -------------------------------------------------------------------------------


def test_firmware_hello() -> None:
    msg = parse_client_message(FIRMWARE_HELLO)
    assert isinstance(msg, Hello)
    assert msg.type is MessageType.HELLO
    assert msg.version == 1
    assert msg.transport == "websocket"
    assert msg.mcp is True
    assert msg.aec is True
    assert msg.audio_params == AudioParams("opus", 16000, 1, 60)
    assert msg.audio_params.samples_per_frame == 960
    assert validate_audio_params(msg.effective_audio_params) == msg.audio_params


def test_browser_hello_without_audio_params_is_accepted_with_defaults() -> None:
    msg = parse_client_message('{"type":"hello","features":{"mcp":true}}')
    assert isinstance(msg, Hello)
    assert msg.audio_params is None
    assert msg.effective_audio_params == UPLINK_DEFAULT == AudioParams("opus", 16000, 1, 60)
    assert msg.version == 1
    assert msg.transport == "websocket"


def test_legacy_hello_without_features_has_no_mcp() -> None:
    msg = parse_client_message('{"type":"hello","version":1,"transport":"websocket"}')
    assert isinstance(msg, Hello)
    assert msg.features == {}
    assert msg.mcp is False
    assert msg.aec is False


def test_hello_gateway_and_mqtt_versions() -> None:
    msg = parse_client_message('{"type":"hello","version":3,"transport":"udp"}')
    assert isinstance(msg, Hello)
    assert (msg.version, msg.transport) == (3, "udp")


def test_hello_camel_case_audio_params_alias() -> None:
    text = '{"type":"hello","audioParams":{"sample_rate":24000,"frame_duration":20}}'
    msg = parse_client_message(text)
    assert isinstance(msg, Hello)
    assert msg.audio_params == AudioParams("opus", 24000, 1, 20)


def test_hello_partial_audio_params_take_defaults_and_integral_floats() -> None:
    msg = parse_client_message('{"type":"hello","audio_params":{"sample_rate":24000.0}}')
    assert isinstance(msg, Hello)
    assert msg.audio_params == AudioParams("opus", 24000, 1, 60)


@pytest.mark.parametrize(
    ("text", "code", "needle"),
    [
        ('{"type":"hello","version":4}', 1002, "version"),
        ('{"type":"hello","version":0}', 1002, "version"),
        ('{"type":"hello","version":"2"}', 1008, "version"),
        ('{"type":"hello","version":true}', 1008, "version"),
        ('{"type":"hello","features":[1]}', 1008, "features"),
        ('{"type":"hello","transport":5}', 1008, "transport"),
        ('{"type":"hello","audio_params":"opus"}', 1008, "audio_params"),
        ('{"type":"hello","audio_params":{"sample_rate":"16000"}}', 1008, "sample_rate"),
        ('{"type":"hello","audio_params":{"channels":1.5}}', 1008, "channels"),
        ('{"type":"hello","audio_params":{"format":7}}', 1008, "format"),
    ],
)
def test_bad_hellos(text: str, code: int, needle: str) -> None:
    err = _error(text)
    assert err.close_code == code
    assert needle in err.reason


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (AudioParams(format="pcm"), "format"),
        (AudioParams(sample_rate=44100), "sample_rate"),
        (AudioParams(channels=2), "channels"),
        (AudioParams(frame_duration=30), "frame_duration"),
    ],
)
def test_audio_params_validation(params: AudioParams, needle: str) -> None:
    problem = audio_params_problem(params)
    assert problem is not None and needle in problem
    with pytest.raises(ProtocolError) as info:
        validate_audio_params(params)
    assert info.value.close_code == 1003


def test_absurd_numbers_keep_the_close_reason_short() -> None:
    huge = "9" * 4000  # valid JSON, below Python's int-parsing limit
    msg = parse_client_message('{"type":"hello","audio_params":{"sample_rate":' + huge + "}}")
    assert isinstance(msg, Hello) and msg.audio_params is not None
    with pytest.raises(ProtocolError) as info:
        validate_audio_params(msg.audio_params)
    assert info.value.reason == "unsupported sample_rate 999999999999..."
    err = _error('{"type":"hello","version":' + huge + "}")
    assert err.close_code == 1002


@pytest.mark.parametrize("rate", [8000, 12000, 16000, 24000, 48000])
@pytest.mark.parametrize("duration", [10, 20, 40, 60, 80, 100, 120])
def test_audio_params_every_supported_combination(rate: int, duration: int) -> None:
    params = AudioParams(sample_rate=rate, frame_duration=duration)
    assert validate_audio_params(params) is params


# --- other device messages ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"session_id":"s1","type":"listen","state":"start","mode":"auto"}',
            Listen(ListenState.START, ListenMode.AUTO, None, "s1"),
        ),
        (
            '{"session_id":"s1","type":"listen","state":"start","mode":"realtime"}',
            Listen(ListenState.START, ListenMode.REALTIME, None, "s1"),
        ),
        ('{"session_id":"","type":"listen","state":"stop"}', Listen(ListenState.STOP, None, None, "")),
        (
            '{"session_id":"s","type":"listen","state":"detect","text":"你好小智"}',
            Listen(ListenState.DETECT, None, "你好小智", "s"),
        ),
        (
            '{"type":"listen","state":"start","mode":"manual","extra":[1,2]}',
            Listen(ListenState.START, ListenMode.MANUAL),
        ),
        ('{"session_id":"s","type":"abort"}', Abort(None, "s")),
        ('{"type":"abort","reason":"wake_word_detected"}', Abort("wake_word_detected")),
        ('{"session_id":"s","type":"goodbye"}', Goodbye("s")),
        ('{"type":"ping"}', Ping()),
        ('{"type":"listen","state":"stop","session_id":42}', Listen(ListenState.STOP)),
    ],
)  # fmt: skip
def test_device_messages(text: str, expected: object) -> None:
    assert parse_client_message(text) == expected


def test_mcp_envelope() -> None:
    text = '{"session_id":"s","type":"mcp","payload":{"jsonrpc":"2.0","id":10000,"result":{}}}'
    msg = parse_client_message(text.encode())
    assert isinstance(msg, Mcp)
    assert msg.payload == {"jsonrpc": "2.0", "id": 10000, "result": {}}
    assert msg.session_id == "s"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"type":"listen"}', "listen.state"),
        ('{"type":"listen","state":"begin"}', "listen.state"),
        ('{"type":"listen","state":1}', "listen.state"),
        ('{"type":"listen","state":"start","mode":"vad"}', "listen.mode"),
        ('{"type":"listen","state":"detect","text":5}', "listen.text"),
        ('{"type":"abort","reason":{}}', "abort.reason"),
        ('{"type":"mcp","payload":"x"}', "mcp.payload"),
        ('{"type":"mcp"}', "mcp.payload"),
    ],
)
def test_bad_known_messages_are_policy_errors(text: str, needle: str) -> None:
    err = _error(text)
    assert err.close_code == 1008
    assert needle in err.reason


@pytest.mark.parametrize("kind", ["iot", "server", "custom", "", "HELLO"])
def test_unknown_types_are_returned_not_raised(kind: str) -> None:
    raw = {"type": kind, "update": True, "descriptors": [{"name": "Speaker"}]}
    msg = parse_client_message(json.dumps(raw))
    assert msg == Unknown(type=kind, raw=raw)


# --- malformed frames --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("", 1007),
        ("{", 1007),
        ("{'type':'hello'}", 1007),
        ('{"type":"ping"} trailing', 1007),
        (b"\xff\xfe{}", 1007),
        (b'{"type":"listen","state":"detect","text":"\xe4\xbd"}', 1007),
        ('{"type":"ping","x":NaN}', 1007),
        ('{"type":"ping","x":-Infinity}', 1007),
        ("[" * 100_000 + "]" * 100_000, 1009),
        ("[" * 30_000 + "]" * 30_000, 1007),
        ('{"type":"ping","n":' + "9" * 5000 + "}", 1007),
        ("[]", 1008),
        ("null", 1008),
        ("42", 1008),
        ('"hello"', 1008),
        ("{}", 1008),
        ('{"session_id":"s"}', 1008),
        ('{"type":null}', 1008),
        ('{"type":5}', 1008),
        ('{"type":["hello"]}', 1008),
    ],
)
def test_malformed_frames(data: str | bytes, code: int) -> None:
    assert _error(data).close_code == code


def test_size_limit_boundary_in_bytes_not_characters() -> None:
    base = '{"type":"ping","pad":""}'
    exact = base[:-2] + "a" * (100 - len(base)) + '"}'
    assert len(exact.encode()) == 100
    assert parse_client_message(exact, max_bytes=100) == Ping()
    assert parse_client_message(exact.encode(), max_bytes=100) == Ping()
    assert _error(exact + " ", max_bytes=100).close_code == 1009
    # 40 CJK characters are 120 bytes of UTF-8: over a 100-byte cap.
    wide = '{"type":"ping","p":"' + "字" * 40 + '"}'
    assert len(wide) < 100
    assert _error(wide, max_bytes=100).close_code == 1009


# --- round trips and builders ------------------------------------------------------------


@pytest.mark.parametrize(
    "msg",
    [
        Hello(),
        Hello(2, {"mcp": True}, "websocket", AudioParams(sample_rate=48000), "sid"),
        Listen(ListenState.START, ListenMode.MANUAL, None, "s"),
        Listen(ListenState.DETECT, None, "hi", None),
        Abort("wake_word_detected", "s"),
        Mcp({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}, "s"),
        Goodbye("s"),
        Ping(),
    ],
)
def test_to_dict_round_trips(msg: object) -> None:
    assert parse_client_message(to_json(msg)) == msg  # type: ignore[arg-type]


def test_to_json_is_compact_and_keeps_unicode() -> None:
    assert to_json(build_stt("你好", "s")) == '{"type":"stt","text":"你好","session_id":"s"}'
    with pytest.raises(ValueError, match="JSON compliant"):
        to_json({"type": "x", "v": float("nan")})


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_TYPES = st.sampled_from(["hello", "listen", "abort", "mcp", "goodbye", "ping", "iot", "zzz"])
_KEYS = st.sampled_from(
    ["version", "features", "transport", "audio_params", "state", "mode", "text", "reason",
     "payload", "session_id", "format", "sample_rate", "channels", "frame_duration"]
)  # fmt: skip


def _check(data: str | bytes) -> None:
    try:
        msg = parse_client_message(data)
    except ProtocolError as exc:
        assert exc.close_code in (1002, 1003, 1007, 1008, 1009)
        assert 0 < len(exc.reason.encode()) <= 123
    else:
        assert isinstance(msg, (Hello, Listen, Abort, Mcp, Goodbye, Ping, Unknown))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_raise_protocol_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_parse_or_raise_protocol_error(data: str) -> None:
    _check(data)


@settings(max_examples=200, deadline=None)
@given(kind=_TYPES, fields=st.dictionaries(_KEYS, _JSON, max_size=6))
def test_structured_junk_parse_or_raise_protocol_error(kind: str, fields: dict[str, Any]) -> None:
    if isinstance(fields.get("audio_params"), dict):
        fields["audio_params"].update({k: v for k, v in fields.items() if k != "audio_params"})
    _check(json.dumps({"type": kind, **fields}))


def test_downlink_default_is_what_we_announce() -> None:
    assert AudioParams("opus", 24000, 1, 60) == DOWNLINK_DEFAULT
