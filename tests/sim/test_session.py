"""Channel and runner against a scripted device WebSocket server (protocol.md §2, §4).

The server is :class:`tests.sim.doubles.ScriptedServer`, a test double on 127.0.0.1 standing
in for the real server (written separately). Audio is paced in real time, so the speech WAVs
are short (0.5-1 s).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.sim.doubles import TONE_HZ, OtaDouble, Script, ScriptedServer, tone_packets
from xiaozhi_local.audio.opus import OpusDecoder
from xiaozhi_local.audio.wav import read_wav, write_wav
from xiaozhi_local.errors import AudioError, SimulatorError
from xiaozhi_local.protocol.mcp_device import TOOLS_PAGE_BYTES
from xiaozhi_local.protocol.messages import build_hello
from xiaozhi_local.protocol.types import ListenMode
from xiaozhi_local.sim.handshake import ChannelConfig
from xiaozhi_local.sim.identity import DeviceIdentity
from xiaozhi_local.sim.report import SessionResult, session_to_dict
from xiaozhi_local.sim.runner import SessionOptions, run_conversation, run_devices, run_session


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    """0.5 s of a 300 Hz tone at 22.05 kHz stereo-averaged mono (resampled by the simulator)."""
    rate = 22050
    t = np.arange(int(rate * 0.5)) / rate
    path = tmp_path / "speech.wav"
    write_wav(path, (np.sin(2 * np.pi * 300 * t) * 6000).astype(np.int16), rate)
    return path


def texts(server: ScriptedServer, kind: str | None = None) -> list[dict[str, Any]]:
    return [m for m in server.sessions[0].texts if kind is None or m.get("type") == kind]


def listens(server: ScriptedServer) -> list[tuple[str, str | None]]:
    return [(m["state"], m.get("mode")) for m in texts(server, "listen")]


def dominant_hz(path: str, rate_expected: int) -> float:
    pcm, rate = read_wav(path)
    assert rate == rate_expected
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.fft.rfftfreq(pcm.shape[0], 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("version", [1, 2, 3])
async def test_full_session_per_binary_version(version: int, speech: Path, tmp_path: Path) -> None:
    server = ScriptedServer(Script(mcp=True))
    out = tmp_path / "reply.wav"
    async with server.running(), OtaDouble(ws_url=server.url, version=version).running() as ota:
        options = SessionOptions(wav=speech, mode=ListenMode.MANUAL, out=out, mcp_padding=14)
        result = await run_session(ota.url, DeviceIdentity.create(), options)
    assert result.ok, result.error
    seen = server.sessions[0]
    # §2.1 handshake: no token → no Authorization; the firmware's headers; nothing a device lacks
    assert seen.headers["protocol-version"] == str(version) and seen.version == version
    assert seen.headers["device-id"] == result.device_id and seen.headers["client-id"] == result.client_id
    assert "authorization" not in seen.headers and "user-agent" not in seen.headers
    assert "sec-websocket-extensions" not in seen.headers
    # §2.2 hello, exactly
    assert seen.texts[0] == {
        "type": "hello", "version": version, "features": {"mcp": True}, "transport": "websocket",
        "audio_params": {"format": "opus", "sample_rate": 16000, "channels": 1, "frame_duration": 60},
    }  # fmt: skip
    assert listens(server) == [("start", "manual"), ("stop", None)]
    assert all(m["session_id"] == "sess-1" for m in texts(server, "listen"))
    # §2.4 uplink: 0.5 s of speech = 9 frames of 60 ms 16 kHz Opus, nothing after listen stop
    decoder = OpusDecoder(16000)
    assert len(seen.frames) == 9 and all(decoder.decode(f).shape == (960,) for f in seen.frames)
    # §4.2/§4.3/§4.4: the simulator's MCP answers, checked by the server-side client and pager
    assert seen.initialize_result == {
        "protocolVersion": "2024-11-05", "capabilities": {"tools": {}},
        "serverInfo": {"name": "bread-compact-wifi", "version": "2.0.3"},
    }  # fmt: skip
    assert seen.pager is not None and seen.pager.complete and seen.pager.pages >= 2
    assert all(size <= TOOLS_PAGE_BYTES + 64 for size in seen.page_bytes)
    names = [tool.name for tool in seen.pager.tools]
    assert names[:4] == ["self.get_device_status", "self.audio_speaker.set_volume",
                         "self.screen.set_brightness", "self.screen.set_theme"]  # fmt: skip
    assert len(names) == 4 + 14 and "self.reboot" not in names  # user-only tools stay hidden
    assert seen.tool_call_result == {"content": [{"type": "text", "text": "true"}], "isError": False}
    assert [c.method for c in result.mcp_calls] == [
        "initialize", "notifications/initialized", *["tools/list"] * seen.pager.pages, "tools/call"]  # fmt: skip
    replies = [r for r in seen.mcp_replies if r.get("id") is not None]
    assert all(r["jsonrpc"] == "2.0" and "result" in r for r in replies)
    assert all(m["session_id"] == "sess-1" for m in texts(server, "mcp"))
    # the reply: text, timings, audio gated and decoded at the server hello's rate
    [turn] = result.turns
    assert turn.completed and turn.stt_texts == ["what is one plus one"]
    assert turn.sentences == ["One plus one is two."] and turn.emotions == ["happy"]
    assert (turn.frames_received, turn.frames_queued, turn.gating_drops, turn.dropped_overflow) == (10, 10, 0, 0)
    data = session_to_dict(result)["turns"][0]["latency"]
    assert 0 <= data["stt_ms"] <= data["tts_start_ms"] <= data["first_audio_ms"] < data["tts_stop_ms"]
    assert data["tts_stop_ms"] <= data["playback_end_ms"] < 2000
    assert result.reply_wav == str(out) and abs(dominant_hz(str(out), 24000) - TONE_HZ) < 10
    assert result.closed_by == "device" and result.close_code == 1000


async def test_auto_mode_streams_silence_then_listens_again(speech: Path) -> None:
    server = ScriptedServer(Script(trigger="frames", trigger_frames=16, ping=True))
    async with server.running():
        result = await run_session(server.url, options=SessionOptions(wav=speech))
    assert result.ok, result.error
    assert server.sessions[0].pong  # WebSocket pings are answered
    # no detect text, listen start; after tts stop and playback the device sends a new listen start
    assert listens(server) == [("start", "auto"), ("start", "auto")]
    seen = server.sessions[0]
    turn = result.turns[0]
    assert turn.speech_frames == 9 and not turn.speech_truncated
    start, stop = seen.reply_window[0]
    frames_during_reply = [t for t in seen.frame_times if start + 0.05 < t < stop]
    assert not frames_during_reply  # the mic is off while speaking (not realtime)
    assert len(seen.frames) >= 16  # speech followed by silence until the server answered
    assert any(len(f) <= 2 for f in seen.frames[12:16])  # DTX: after ~4 silent frames, 1-2 byte packets


async def test_text_only_turn_uses_listen_detect() -> None:
    server = ScriptedServer(Script(trigger="detect"))
    async with server.running():
        result = await run_session(server.url, options=SessionOptions(text="你好小智"))
    assert result.ok, result.error
    detect = {"session_id": "sess-1", "type": "listen", "state": "detect", "text": "你好小智"}
    assert texts(server, "listen")[0] == detect
    assert listens(server)[1:] == [("start", "auto"), ("start", "auto")]
    assert result.turns[0].t_speech_end is not None and result.turns[0].completed


async def test_two_turns_in_auto_mode(speech: Path) -> None:
    server = ScriptedServer(Script(trigger="frames", trigger_frames=11, tone_s=0.3))
    async with server.running():
        result = await run_session(server.url, options=SessionOptions(wav=speech, turns=2))
    assert result.ok, result.error
    assert [t.completed for t in result.turns] == [True, True]
    assert listens(server) == [("start", "auto")] * 3  # one per turn end, none extra
    assert all(t.speech_frames == 9 for t in result.turns)


async def test_realtime_mode_keeps_the_mic_open(speech: Path) -> None:
    server = ScriptedServer(Script(trigger="frames", trigger_frames=12))
    async with server.running():
        result = await run_session(server.url, options=SessionOptions(wav=speech, mode=ListenMode.REALTIME))
    assert result.ok, result.error
    assert listens(server) == [("start", "realtime")]  # no new listen start after tts stop
    seen = server.sessions[0]
    start, stop = seen.reply_window[0]
    assert len([t for t in seen.frame_times if start < t < stop]) >= 5  # full duplex


async def test_gating_violations_are_counted(speech: Path) -> None:
    script = Script(audio_before_tts_start=3, audio_after_tts_stop=2, tone_s=0.3)
    server = ScriptedServer(script)
    async with server.running():
        options = SessionOptions(wav=speech, mode=ListenMode.MANUAL)
        result = await run_session(server.url, options=options)
    assert result.ok, result.error
    turn = result.turns[0]
    assert (turn.dropped_early, turn.dropped_late, turn.frames_queued) == (3, 2, 5)
    audio = session_to_dict(result)["turns"][0]["audio"]
    assert audio["dropped_before_tts_start"] == 3 and audio["dropped_after_tts_stop"] == 2


async def test_burst_overflows_the_device_queue(speech: Path) -> None:
    server = ScriptedServer(Script(burst=True, tone_s=1.0, frame_ms=20))  # 50 packets of 20 ms
    async with server.running():
        result = await run_session(server.url, options=SessionOptions(wav=speech, mode=ListenMode.MANUAL))
    assert result.ok, result.error
    turn = result.turns[0]
    assert turn.frames_received == 50 and turn.dropped_overflow == 50 - 43
    assert turn.max_queue_depth == 40


async def test_abort_mid_reply(speech: Path) -> None:
    server = ScriptedServer(Script(tone_s=3.0))
    async with server.running():
        options = SessionOptions(wav=speech, mode=ListenMode.MANUAL, abort_after_s=0.2)
        result = await run_session(server.url, options=options)
    assert result.ok, result.error
    assert texts(server, "abort") == [{"session_id": "sess-1", "type": "abort"}]
    turn = result.turns[0]
    assert turn.t_abort is not None and turn.completed and turn.frames_queued < 20
    abort_to_stop = session_to_dict(result)["turns"][0]["latency"]["abort_to_tts_stop_ms"]
    assert abort_to_stop is not None and 0 <= abort_to_stop < 500


async def test_hello_timeout() -> None:
    server = ScriptedServer(Script(hello=None))
    async with server.running():
        result = await run_session(server.url, options=SessionOptions(text="hi", hello_timeout_s=0.3))
    assert result.error is not None and "no server hello within 0.3 s" in result.error
    assert result.closed_by == "device"


@pytest.mark.parametrize(
    ("hello", "fragment"),
    [
        (build_hello("s") | {"transport": "udp"}, "transport='udp'"),
        ({"type": "hello", "session_id": "s"}, "no 'transport'"),
        (build_hello("s") | {"audio_params": {"sample_rate": 44100}}, "44100"),
    ],
)
async def test_bad_server_hello(hello: dict[str, Any], fragment: str) -> None:
    server = ScriptedServer(Script(hello=hello))
    async with server.running():
        result = await run_session(server.url, options=SessionOptions(text="hi"))
    assert result.error is not None and fragment in result.error


async def test_server_close_reports_code_and_reason() -> None:
    server = ScriptedServer(Script(close_after_hello_with=(4001, "device not allowed")))
    async with server.running():
        result = await run_session(server.url, options=SessionOptions(text="hi"))
    assert result.error_kind == "ChannelClosedError"
    assert result.error is not None and "4001" in result.error and "device not allowed" in result.error
    assert result.closed_by == "server" and result.close_code == 4001


async def test_server_close_after_the_last_turn_is_fine(speech: Path) -> None:
    server = ScriptedServer(Script(close_after_reply=True, tone_s=0.3))
    async with server.running():
        one = await run_session(server.url, options=SessionOptions(wav=speech, mode=ListenMode.MANUAL))
        two = await run_session(server.url, options=SessionOptions(wav=speech, mode=ListenMode.MANUAL, turns=2))
    assert one.ok, one.error
    assert one.closed_by == "server" and one.close_reason == "bye"
    assert two.error is not None and "after turn 1 of 2" in two.error


async def test_query_auth_and_bearer_token() -> None:
    server = ScriptedServer(Script(trigger="detect", tone_s=0.2))
    ident = DeviceIdentity.create("02:00:00:00:00:01")
    async with server.running():
        config = ChannelConfig(server.url, ident.mac, ident.client_id, token="abc", protocol_version=3,
                               query_auth=True)  # fmt: skip
        result = await run_conversation(config, ident, SessionOptions(text="hi"))
        config = ChannelConfig(server.url, ident.mac, ident.client_id, token="abc")
        await run_conversation(config, ident, SessionOptions(text="hi"))
    assert result.ok, result.error
    browser, device = server.sessions
    assert browser.path == (f"/xiaozhi/v1/?device-id=02%3A00%3A00%3A00%3A00%3A01&client-id={ident.client_id}"
                            "&authorization=Bearer+abc")  # fmt: skip
    assert not {"device-id", "client-id", "authorization", "protocol-version"} & set(browser.headers)
    assert browser.version == 3 and browser.texts[0]["version"] == 3  # from the hello only
    assert device.headers["authorization"] == "Bearer abc"


async def test_many_devices_have_distinct_macs(speech: Path, tmp_path: Path) -> None:
    server = ScriptedServer(Script(tone_s=0.3))
    async with server.running():
        options = SessionOptions(wav=speech, mode=ListenMode.MANUAL, out=tmp_path / "r.wav")
        results = await run_devices(server.url, 3, options, mac="02:00:00:00:00:0a")
    assert all(r.ok for r in results), [r.error for r in results]
    macs = {s.headers["device-id"] for s in server.sessions}
    assert len(macs) == 3 and "02:00:00:00:00:0a" in macs
    assert sorted(Path(r.reply_wav or "").name for r in results) == ["r-1.wav", "r-2.wav", "r-3.wav"]


async def test_bad_wav_fails_before_any_traffic(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav at all")
    with pytest.raises(AudioError, match="not a WAV"):
        await run_session("ws://127.0.0.1:9/xiaozhi/v1/", options=SessionOptions(wav=bad))


def test_result_dict_is_json(speech: Path) -> None:
    result = SessionResult(device_id="02:00:00:00:00:01", client_id="c", t0=0.0)
    json.dumps(session_to_dict(result))


async def test_realtime_barge_in_stops_the_reply_and_waits_for_the_new_answer(speech: Path) -> None:
    script = Script(trigger="frames", trigger_frames=12, tone_s=3.0, stop_on_speech=True)
    server = ScriptedServer(script)
    async with server.running():
        options = SessionOptions(wav=speech, mode=ListenMode.REALTIME, barge_in_after_s=0.3)
        result = await run_session(server.url, options=options)
    assert result.ok, result.error
    seen = server.sessions[0]
    # stock firmware sends nothing for a barge-in: no abort, no new listen; the speech just streams
    assert listens(server) == [("start", "realtime")] and texts(server, "abort") == []
    assert len(seen.barge_in_at) == 1 and seen.replies_sent == ["what is one plus one", "and what is two plus two"]
    first, second = result.turns
    assert first.t_barge_in is not None and first.barge_in_stopped and first.completed
    assert first.t_speech_end is not None and first.t_speech_end < first.t_barge_in
    assert first.frames_queued < len(tone_packets(3.0))  # the 3 s reply was cut short
    assert first.sentences == ["One plus one is two."] and first.stt_texts == ["what is one plus one"]
    assert second.barge_in and second.completed and second.speech_frames == 9
    assert second.t_begin == first.t_barge_in and second.t_listen_start is None
    assert second.stt_texts == ["and what is two plus two"] and second.sentences == ["Two plus two is four."]
    assert second.frames_queued == len(tone_packets(0.3)) and second.gating_drops == 0
    turns = session_to_dict(result)["turns"]
    assert [t["barge_in"] for t in turns] == [False, True]
    assert turns[0]["interrupted_by_barge_in"] and turns[0]["stopped_after_barge_in"] is True
    assert turns[0]["latency"]["barge_in_to_tts_stop_ms"] > 0
    assert turns[0]["times_ms"]["barge_in"] == turns[1]["times_ms"]["begin"]
    assert turns[1]["interrupted_by_barge_in"] is False and turns[1]["stopped_after_barge_in"] is None
    assert turns[1]["transcript"] == "and what is two plus two"
    assert 0 <= turns[1]["latency"]["stt_ms"] <= turns[1]["latency"]["first_audio_ms"]
    json.dumps(session_to_dict(result))


async def test_barge_in_against_a_server_that_ignores_it(speech: Path) -> None:
    server = ScriptedServer(Script(trigger="frames", trigger_frames=12, tone_s=1.0))  # no stop_on_speech
    async with server.running():
        options = SessionOptions(wav=speech, mode=ListenMode.REALTIME, barge_in_after_s=0.1, reply_timeout_s=1.5)
        result = await run_session(server.url, options=options)
    assert result.error is not None and "no reply to the barge-in" in result.error
    first, second = result.turns
    assert first.frames_queued == len(tone_packets(1.0))  # the whole reply played over the user
    assert first.frames_after_barge_in > 0
    assert second.barge_in and not second.completed and second.stt_texts == []


async def test_barge_in_after_the_reply_ended_is_noted(speech: Path) -> None:
    server = ScriptedServer(Script(trigger="frames", trigger_frames=12, tone_s=0.3, stop_on_speech=True))
    async with server.running():
        options = SessionOptions(wav=speech, mode=ListenMode.REALTIME, barge_in_after_s=5.0)
        result = await run_session(server.url, options=options)
    assert result.ok, result.error
    assert len(result.turns) == 1 and result.turns[0].t_barge_in is None
    assert any("ended before the barge-in" in note for note in result.notes)


async def test_barge_in_needs_realtime_mode_and_speech(speech: Path) -> None:
    with pytest.raises(SimulatorError, match="--mode realtime"):
        SessionOptions(wav=speech, barge_in_after_s=1.0)
    with pytest.raises(SimulatorError, match="--mode realtime"):
        SessionOptions(wav=speech, mode=ListenMode.MANUAL, barge_in_after_s=1.0)
    with pytest.raises(SimulatorError, match="negative"):
        SessionOptions(wav=speech, mode=ListenMode.REALTIME, barge_in_after_s=-1.0)
    text_only = SessionOptions(text="hi", mode=ListenMode.REALTIME, barge_in_after_s=1.0)
    with pytest.raises(SimulatorError, match="--wav"):  # before any traffic: nothing listens on port 9
        await run_session("ws://127.0.0.1:9/xiaozhi/v1/", options=text_only)
    with pytest.raises(SimulatorError, match="--wav"):
        await run_devices("ws://127.0.0.1:9/xiaozhi/v1/", 2, text_only)
