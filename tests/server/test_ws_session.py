"""The device WebSocket over real loopback sockets, driven by a raw client (not the simulator).

The echo conversation fills the turns: it plays back what it heard, which proves that the
uplink was decoded and the downlink encoded, framed and paced.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from xiaozhi_local.audio.opus import OpusDecoder, OpusEncoder
from xiaozhi_local.config import ServerSettings
from xiaozhi_local.pipeline.echo import EchoConversation
from xiaozhi_local.protocol.framing import decode_frame, encode_frame
from xiaozhi_local.server.context import ServerContext
from xiaozhi_local.server.ws import DeviceSocketServer, admit_all

HELLO = {"type": "hello", "version": 1, "features": {"mcp": False}, "transport": "websocket",
         "audio_params": {"format": "opus", "sample_rate": 16000, "channels": 1, "frame_duration": 60}}


@pytest.fixture
async def server() -> AsyncIterator[tuple[DeviceSocketServer, str]]:
    ctx = ServerContext(ServerSettings(advertise_host="127.0.0.1", hello_timeout_s=1.0, idle_timeout_s=30))
    srv = DeviceSocketServer(ctx, EchoConversation, admit=admit_all)  # the session protocol, not admission
    port = await srv.start("127.0.0.1", 0)
    yield srv, f"ws://127.0.0.1:{port}/xiaozhi/v1/"
    await srv.close()


def headers(version: int = 1, device: str = "aa:bb:cc:dd:ee:01") -> dict[str, str]:
    return {"Device-Id": device, "Client-Id": "c0ffee00-0000-4000-8000-000000000001",
            "Protocol-Version": str(version), "Authorization": "Bearer test"}


def tone(seconds: float, rate: int = 16000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


async def collect_reply(ws: ClientConnection, version: int, timeout: float = 15) -> dict[str, Any]:
    """Read until tts stop: JSON messages in order, and the decoded downlink audio."""
    messages: list[dict[str, Any]] = []
    decoder = OpusDecoder(sample_rate=24000)
    audio: list[np.ndarray] = []
    early_frames = 0
    async with asyncio.timeout(timeout):
        while True:
            raw = await ws.recv()
            if isinstance(raw, bytes):
                if not any(m.get("type") == "tts" and m.get("state") == "start" for m in messages):
                    early_frames += 1
                audio.append(decoder.decode(decode_frame(version, raw).payload))
                continue
            msg = json.loads(raw)
            messages.append(msg)
            if msg.get("type") == "tts" and msg.get("state") == "stop":
                break
    return {"messages": messages, "audio": np.concatenate(audio) if audio else np.zeros(0, np.int16),
            "early_frames": early_frames}


@pytest.mark.parametrize("version", [1, 2, 3])
async def test_manual_turn_echoes_in_every_binary_version(server: Any, version: int) -> None:
    _, url = server
    async with connect(url, additional_headers=headers(version)) as ws:
        await ws.send(json.dumps({**HELLO, "version": version}))
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello" and hello["transport"] == "websocket" and hello["session_id"]
        assert hello["audio_params"] == {"format": "opus", "sample_rate": 24000, "channels": 1, "frame_duration": 60}
        await ws.send(json.dumps({"session_id": hello["session_id"], "type": "listen", "state": "start",
                                  "mode": "manual"}))
        encoder = OpusEncoder(sample_rate=16000, frame_ms=60, application="voip")
        for packet in encoder.encode_all(tone(1.2)):
            await ws.send(encode_frame(version, packet))
        await ws.send(json.dumps({"session_id": hello["session_id"], "type": "listen", "state": "stop"}))
        reply = await collect_reply(ws, version)
    kinds = [(m["type"], m.get("state")) for m in reply["messages"]]
    assert kinds[0] == ("stt", None) and "1.2 s" in reply["messages"][0]["text"]
    assert ("tts", "start") in kinds and kinds[-1] == ("tts", "stop")
    assert kinds.index(("tts", "start")) < kinds.index(("tts", "sentence_start"))
    assert reply["early_frames"] == 0
    # Chime (150 ms) + what we said (1.2 s), padded to whole 60 ms frames, at 24 kHz.
    seconds = reply["audio"].size / 24000
    assert 1.3 <= seconds <= 1.6
    spectrum = np.abs(np.fft.rfft(reply["audio"][-int(0.8 * 24000):].astype(float)))
    peak_hz = np.argmax(spectrum) / (len(spectrum) - 1) * 12000
    assert abs(peak_hz - 440) < 10


async def close_of(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


@pytest.mark.parametrize(
    ("first", "code", "needle"),
    [
        (b"\x00\x01", 1003, "binary frame before hello"),
        ("{not json", 1007, "invalid JSON"),
        (json.dumps({"type": "listen", "state": "start"}), 1008, "expected hello first"),
        (json.dumps({**HELLO, "version": 7}), 1002, "unsupported"),
        (json.dumps({**HELLO, "audio_params": {"format": "pcm", "sample_rate": 16000}}), 1003, "opus"),
        (json.dumps({**HELLO, "transport": "udp"}), 1008, "transport"),
    ],
)
async def test_bad_openings_get_a_close_code_and_reason(server: Any, first: Any, code: int, needle: str) -> None:
    _, url = server
    async with connect(url, additional_headers=headers()) as ws:
        await ws.send(first)
        got_code, reason = await close_of(ws)
    assert got_code == code and needle in reason


async def test_hello_timeout_missing_device_id_and_wrong_path(server: Any) -> None:
    _, url = server
    async with connect(url, additional_headers=headers()) as ws:
        code, reason = await close_of(ws)  # we never say hello
    assert code == 1008 and "no hello" in reason
    async with connect(url) as ws:
        code, reason = await close_of(ws)
    assert code == 1008 and "Device-Id" in reason
    with pytest.raises(Exception, match="404"):
        async with connect(url.replace("/xiaozhi/v1/", "/elsewhere")):
            pass


async def test_query_parameter_identity_for_browsers(server: Any) -> None:
    _, url = server
    async with connect(url + "?device-id=web-test-1&client-id=abc&authorization=Bearer%20x") as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "transport": "websocket"}))
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello"
        await ws.send(json.dumps({"type": "listen", "state": "detect", "text": "hi there"}))
        reply = await collect_reply(ws, 1)
    assert reply["messages"][0] == {"type": "stt", "text": "hi there", "session_id": hello["session_id"]}


async def test_oversize_frame_and_garbage_audio_close_only_that_session(server: Any) -> None:
    _, url = server
    async with connect(url, additional_headers=headers(device="aa:bb:cc:dd:ee:02")) as good:
        await good.send(json.dumps(HELLO))
        await good.recv()
        async with connect(url, additional_headers=headers(), max_size=None) as bad:
            await bad.send(json.dumps(HELLO))
            await bad.recv()
            await bad.send(b"\x00" * 70_000)
            code, _ = await close_of(bad)
        assert code == 1009
        async with connect(url, additional_headers=headers(3)) as bad:
            await bad.send(json.dumps({**HELLO, "version": 3}))
            await bad.recv()
            await bad.send(b"\x00\x00\x00\x09short")  # v3 header says 9 bytes, 5 follow
            code, reason = await close_of(bad)
        assert code == 1007 and "payload_size" in reason
        # The first session still works.
        await good.send(json.dumps({"type": "listen", "state": "detect", "text": "still here?"}))
        reply = await collect_reply(good, 1)
        assert reply["messages"][0]["text"] == "still here?"


async def test_unknown_types_are_ignored_and_ping_answered(server: Any) -> None:
    _, url = server
    async with connect(url, additional_headers=headers()) as ws:
        await ws.send(json.dumps(HELLO))
        await ws.recv()
        await ws.send(json.dumps({"type": "iot", "update": True, "descriptors": []}))
        await ws.send(json.dumps({"type": "ping"}))
        pong = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert pong["type"] == "pong" and isinstance(pong["timestamp"], int)


async def test_idle_session_is_closed_with_a_reason() -> None:
    ctx = ServerContext(ServerSettings(advertise_host="127.0.0.1", idle_timeout_s=0.5))
    srv = DeviceSocketServer(ctx, EchoConversation, admit=admit_all)  # the session protocol, not admission
    port = await srv.start("127.0.0.1", 0)
    try:
        async with connect(f"ws://127.0.0.1:{port}/xiaozhi/v1/", additional_headers=headers()) as ws:
            await ws.send(json.dumps(HELLO))
            await ws.recv()
            code, reason = await close_of(ws)
        assert (code, reason) == (1000, "idle timeout")
        async with asyncio.timeout(5):  # the server finishes its teardown just after the close
            while ctx.sessions:
                await asyncio.sleep(0.02)
    finally:
        await srv.close()


async def test_abort_mid_reply_stops_audio_and_sends_tts_stop(server: Any) -> None:
    _, url = server
    async with connect(url, additional_headers=headers()) as ws:
        await ws.send(json.dumps(HELLO))
        hello = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "listen", "state": "start", "mode": "manual"}))
        encoder = OpusEncoder(sample_rate=16000, frame_ms=60, application="voip")
        for packet in encoder.encode_all(tone(4.0)):
            await ws.send(encode_frame(1, packet))
        await ws.send(json.dumps({"type": "listen", "state": "stop"}))
        frames = 0
        async with asyncio.timeout(10):
            while frames < 10:  # the reply is playing
                if isinstance(await ws.recv(), bytes):
                    frames += 1
        await ws.send(json.dumps({"session_id": hello["session_id"], "type": "abort"}))
        after: list[Any] = []
        async with asyncio.timeout(10):
            while True:
                raw = await ws.recv()
                after.append(raw)
                if isinstance(raw, str) and json.loads(raw).get("state") == "stop":
                    break
        # Only what was already on the wire before the abort may still arrive: a few frames.
        assert sum(isinstance(r, bytes) for r in after) <= 6
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await ws.recv()  # and nothing after tts stop


async def test_garbage_opus_is_dropped_then_the_session_closed_alone(server: Any) -> None:
    _, url = server
    async with connect(url, additional_headers=headers(device="aa:bb:cc:dd:ee:03")) as good:
        await good.send(json.dumps(HELLO))
        await good.recv()
        async with connect(url, additional_headers=headers()) as bad:
            await bad.send(json.dumps(HELLO))
            await bad.recv()
            await bad.send(json.dumps({"type": "listen", "state": "start", "mode": "manual"}))
            for _ in range(10):  # a few bad packets are dropped, the session lives on
                await bad.send(b"\xfe\xff\xff\xff\xff")
            await bad.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(bad.recv(), 5))["type"] == "pong"
            for _ in range(60):  # a stream of nothing but garbage ends it
                await bad.send(b"\xff")
            code, reason = await close_of(bad)
        assert (code, reason) == (1007, "undecodable opus audio")
        await good.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(good.recv(), 5))["type"] == "pong"
