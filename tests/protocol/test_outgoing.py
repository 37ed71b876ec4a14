"""Server → device builders (protocol.md §2.2, §2.6, §8 item 5)."""

from __future__ import annotations

import json

import pytest

from xiaozhi_local.protocol.messages import (
    EMOTIONS,
    AudioParams,
    build_alert,
    build_goodbye,
    build_hello,
    build_llm,
    build_mcp,
    build_pong,
    build_stt,
    build_system_reboot,
    build_tts_sentence_end,
    build_tts_sentence_start,
    build_tts_start,
    build_tts_stop,
    to_json,
)


def test_server_hello_announces_what_we_really_encode() -> None:
    hello = build_hello("abc123")
    assert hello == {
        "type": "hello",
        "transport": "websocket",
        "session_id": "abc123",
        "audio_params": {"format": "opus", "sample_rate": 24000, "channels": 1, "frame_duration": 60},
    }
    assert to_json(hello) == (
        '{"type":"hello","transport":"websocket","session_id":"abc123",'
        '"audio_params":{"format":"opus","sample_rate":24000,"channels":1,"frame_duration":60}}'
    )


def test_server_hello_custom_params_and_udp_transport() -> None:
    hello = build_hello("s", AudioParams(sample_rate=16000, frame_duration=20), transport="udp")
    assert hello["transport"] == "udp"
    assert hello["audio_params"]["sample_rate"] == 16000
    assert hello["audio_params"]["frame_duration"] == 20


def test_server_hello_rejects_what_the_device_cannot_decode() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        build_hello("s", AudioParams(sample_rate=44100))
    with pytest.raises(ValueError, match="transport"):
        build_hello("s", transport="mqtt")
    with pytest.raises(TypeError):
        build_hello(None)  # type: ignore[arg-type]


def test_stt_llm_tts_shapes() -> None:
    assert build_stt("hi") == {"type": "stt", "text": "hi"}
    assert build_stt("hi", "s", glyph_push={"v": 1}) == {
        "type": "stt",
        "text": "hi",
        "session_id": "s",
        "glyph_push": {"v": 1},
    }
    assert build_llm("happy", "🙂", "s") == {
        "type": "llm",
        "emotion": "happy",
        "text": "🙂",
        "session_id": "s",
    }
    assert build_tts_start("s") == {"type": "tts", "state": "start", "session_id": "s"}
    assert build_tts_sentence_start("第一句。") == {
        "type": "tts",
        "state": "sentence_start",
        "text": "第一句。",
    }
    assert build_tts_sentence_end() == {"type": "tts", "state": "sentence_end"}
    assert build_tts_stop() == {"type": "tts", "state": "stop"}


def test_mcp_alert_system_pong_goodbye_shapes() -> None:
    payload = {"jsonrpc": "2.0", "id": 10000, "method": "tools/list"}
    assert build_mcp(payload) == {"type": "mcp", "payload": payload}
    assert build_mcp(payload, "s")["session_id"] == "s"
    assert build_alert("Error", "no network", "sad") == {
        "type": "alert",
        "status": "Error",
        "message": "no network",
        "emotion": "sad",
    }
    assert build_system_reboot() == {"type": "system", "command": "reboot"}
    assert build_pong(1767225600000) == {"type": "pong", "timestamp": 1767225600000}
    assert build_goodbye("s") == {"type": "goodbye", "session_id": "s"}


@pytest.mark.parametrize(
    "args",
    [(None, "m", "e"), ("s", None, "e"), ("s", "m", None), ("s", "m", 1)],
)
def test_alert_needs_three_strings(args: tuple[object, object, object]) -> None:
    with pytest.raises(TypeError):
        build_alert(*args)  # type: ignore[arg-type]


def test_builders_type_check_text() -> None:
    with pytest.raises(TypeError):
        build_stt(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        build_llm("happy", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        build_mcp([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        build_pong(True)


def test_emotions_cover_the_firmware_list() -> None:
    assert {"neutral", "happy", "sad", "thinking", "confused"} <= EMOTIONS
    assert len(EMOTIONS) == 21


def test_every_builder_output_is_valid_compact_json() -> None:
    messages = [
        build_hello("s"),
        build_stt("x"),
        build_llm("happy", "🙂"),
        build_tts_start(),
        build_tts_sentence_start("x"),
        build_tts_stop(),
        build_mcp({"jsonrpc": "2.0"}),
        build_alert("a", "b", "c"),
        build_system_reboot(),
    ]
    for msg in messages:
        text = to_json(msg)
        assert json.loads(text) == msg
        assert ", " not in text and ": " not in text
