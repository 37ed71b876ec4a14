"""Test doubles for the simulator's tests: a scripted device WebSocket server and an OTA server.

They stand in for the real xiaozhi-local server, which is being written separately right now;
they implement only what each test needs, straight from protocol.md, on 127.0.0.1 port 0.
Server-side pure helpers from ``xiaozhi_local.protocol`` (message builders, framing, the MCP
client and tools/list pager) are used so the simulator's answers are checked by the same code
the server will use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve

from xiaozhi_local.audio.opus import OpusDecoder, OpusEncoder
from xiaozhi_local.protocol.audio_params import AudioParams
from xiaozhi_local.protocol.framing import FrameCodec, negotiate_version
from xiaozhi_local.protocol.mcp import McpClient, McpResult, ToolsListPager
from xiaozhi_local.protocol.messages import (
    build_hello,
    build_llm,
    build_mcp,
    build_stt,
    build_tts_sentence_start,
    build_tts_start,
    build_tts_stop,
    to_json,
)

TONE_HZ = 440.0


def is_speech(pcm: np.ndarray) -> bool:
    """A crude server VAD for the doubles: the simulator's silence is near zero, its speech is not."""
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > 500


def tone_packets(seconds: float, rate: int = 24000, hz: float = TONE_HZ, frame_ms: int = 60) -> list[bytes]:
    """A sine tone as Opus packets at ``rate`` (what a TTS reply looks like on the wire)."""
    n = int(rate * seconds)
    pcm = (np.sin(2 * np.pi * hz * np.arange(n) / rate) * 8000).astype(np.int16)
    return OpusEncoder(rate, 1, frame_ms).encode_all(pcm)


@dataclass
class Script:
    """What the scripted server does on each connection."""

    hello: dict[str, Any] | None = field(default_factory=lambda: build_hello("sess-1", AudioParams(sample_rate=24000)))
    close_after_hello_with: tuple[int, str] | None = None
    trigger: str = "stop"  # "stop" (listen stop), "detect" (listen detect), "frames" (N frames after listen start)
    trigger_frames: int = 12
    stt: str = "what is one plus one"
    sentences: tuple[str, ...] = ("One plus one is two.",)
    tone_s: float = 0.6
    frame_ms: int = 60  # ≤ the hello's frame_duration (§2.4)
    prebuffer: int = 5
    burst: bool = False  # send all reply audio at once (overflows the device queue)
    audio_before_tts_start: int = 0
    audio_after_tts_stop: int = 0
    stop_on_abort: bool = True
    mcp: bool = False
    tool_call: tuple[str, dict[str, Any]] | None = ("self.audio_speaker.set_volume", {"volume": 50})
    close_after_reply: bool = False
    ping: bool = False  # send a WebSocket ping after the hello; the device must answer it (§2.1)
    stop_on_speech: bool = False  # realtime barge-in: speech during a reply stops it (tts stop), §2.7
    barge_in_frames: int = 3  # speech frames heard during a reply before it is stopped
    barge_in_stt: str = "and what is two plus two"
    barge_in_sentences: tuple[str, ...] = ("Two plus two is four.",)
    barge_in_tone_s: float = 0.3


@dataclass
class Seen:
    """What the scripted server observed on one connection."""

    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    version: int = 1
    texts: list[dict[str, Any]] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    frames_since_listen: int = 0
    mcp_replies: list[dict[str, Any]] = field(default_factory=list)
    pager: ToolsListPager | None = None
    initialize_result: Any = None
    tool_call_result: Any = None
    page_bytes: list[int] = field(default_factory=list)
    abort_at: float | None = None
    listen_start_at: list[float] = field(default_factory=list)
    reply_window: list[tuple[float, float]] = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list)
    pong: bool = False
    frames_sent_after_abort: int = 0
    speech_during_reply: int = 0
    barge_in_at: list[float] = field(default_factory=list)
    barge_ins_answered: int = 0
    replies_sent: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ScriptedServer:
    """A device WebSocket server following a :class:`Script` (one :class:`Seen` per connection)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sessions: list[Seen] = []
        self.url = ""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ScriptedServer]:
        async with serve(self._handle, "127.0.0.1", 0, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/xiaozhi/v1/"
            yield self

    async def _handle(self, ws: ServerConnection) -> None:
        seen = Seen()
        self.sessions.append(seen)
        assert ws.request is not None
        seen.path = ws.request.path
        seen.headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
        try:
            await self._session(ws, seen)
        except Exception:  # the device went away; the test checks what was seen
            pass
        finally:
            seen.done.set()

    async def _session(self, ws: ServerConnection, seen: Seen) -> None:
        s = self.script
        hello = json.loads(await ws.recv())
        seen.texts.append(hello)
        seen.version = negotiate_version(seen.headers.get("protocol-version"), hello.get("version"))
        codec = FrameCodec(seen.version)
        if s.hello is None:
            await ws.wait_closed()
            return
        await ws.send(json.dumps(s.hello))
        if s.close_after_hello_with is not None:
            await ws.close(*s.close_after_hello_with)
            return
        if s.ping:
            await asyncio.wait_for(await ws.ping(), 2)
            seen.pong = True
        pending: dict[int, asyncio.Future[Any]] = {}
        client = McpClient()
        tasks: set[asyncio.Task[None]] = set()
        if s.mcp:
            tasks.add(asyncio.create_task(self._mcp(ws, seen, client, pending)))
        reply: asyncio.Task[None] | None = None
        decoder = OpusDecoder(16000)
        async for data in ws:
            if isinstance(data, bytes):
                payload = codec.decode(data).payload
                seen.frames.append(payload)
                seen.frame_times.append(asyncio.get_running_loop().time())
                seen.frames_since_listen += 1
                idle = reply is None or reply.done()
                loud = s.stop_on_speech and is_speech(decoder.decode(payload))
                if loud and reply is not None and not idle:
                    seen.speech_during_reply += 1
                    if seen.speech_during_reply == s.barge_in_frames:  # the user talks over the reply
                        reply.cancel()
                        seen.barge_in_at.append(asyncio.get_running_loop().time())
                        seen.speech_during_reply = seen.frames_since_listen = 0
                        await ws.send(to_json(build_tts_stop("sess-1")))
                if s.trigger == "frames" and seen.frames_since_listen == s.trigger_frames and idle:
                    reply = asyncio.create_task(self._reply(ws, seen, codec))
                continue
            msg = json.loads(data)
            seen.texts.append(msg)
            kind, state = msg.get("type"), msg.get("state")
            if kind == "mcp":
                seen.mcp_replies.append(msg["payload"])
                fut = pending.pop(msg["payload"].get("id"), None)
                if fut is not None:
                    fut.set_result(msg["payload"])
            elif kind == "listen" and state == "start":
                seen.frames_since_listen = 0
                seen.listen_start_at.append(asyncio.get_running_loop().time())
            elif kind == "abort":
                seen.abort_at = asyncio.get_running_loop().time()
                if reply is not None:
                    reply.cancel()
                if s.stop_on_abort:
                    await ws.send(to_json(build_tts_stop("sess-1")))
            elif (
                kind == "listen"
                and state in ("stop", "detect")
                and s.trigger == state
                and (reply is None or reply.done())
            ):
                reply = asyncio.create_task(self._reply(ws, seen, codec))
        for task in tasks:
            task.cancel()

    async def _reply(self, ws: ServerConnection, seen: Seen, codec: FrameCodec) -> None:
        s = self.script
        answer_barge_in = len(seen.barge_in_at) > seen.barge_ins_answered
        seen.barge_ins_answered += answer_barge_in
        stt = s.barge_in_stt if answer_barge_in else s.stt
        sentences = s.barge_in_sentences if answer_barge_in else s.sentences
        packets = tone_packets(s.barge_in_tone_s if answer_barge_in else s.tone_s, frame_ms=s.frame_ms)
        frame_s = s.frame_ms / 1000
        seen.replies_sent.append(stt)
        for p in packets[: s.audio_before_tts_start]:
            await ws.send(codec.encode(p))
        await ws.send(to_json(build_stt(stt, "sess-1")))
        await ws.send(to_json(build_tts_start("sess-1")))
        await ws.send(to_json(build_llm("happy", "🙂", "sess-1")))
        loop = asyncio.get_running_loop()
        start = loop.time()
        per_sentence = max(1, len(packets) // len(sentences))
        for k, packet in enumerate(packets):
            if k % per_sentence == 0 and k // per_sentence < len(sentences):
                await ws.send(to_json(build_tts_sentence_start(sentences[k // per_sentence], "sess-1")))
            await ws.send(codec.encode(packet, timestamp_ms=k * s.frame_ms))
            if seen.abort_at is not None:
                seen.frames_sent_after_abort += 1
            if not s.burst and k + 1 >= s.prebuffer:
                await asyncio.sleep(max(0.0, start + (k + 2 - s.prebuffer) * frame_s - loop.time()))
        await asyncio.sleep(max(0.0, start + len(packets) * frame_s - loop.time()))
        await ws.send(to_json(build_tts_stop("sess-1")))
        seen.reply_window.append((start, loop.time()))
        for p in packets[: s.audio_after_tts_stop]:
            await ws.send(codec.encode(p))
        if s.close_after_reply:
            await ws.close(1000, "bye")

    async def _mcp(self, ws: ServerConnection, seen: Seen, client: McpClient,
                   pending: dict[int, asyncio.Future[Any]]) -> None:  # fmt: skip
        async def call(payload: dict[str, Any]) -> Any:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            pending[payload["id"]] = fut
            await ws.send(to_json(build_mcp(payload, "sess-1")))
            reply = await asyncio.wait_for(fut, 5)
            event = client.handle_response(reply)
            assert isinstance(event, McpResult), event
            return event.result

        seen.initialize_result = await call(client.initialize_request("http://127.0.0.1:1/mcp/vision/explain", "tok"))
        await ws.send(to_json(build_mcp(client.initialized_notification(), "sess-1")))
        seen.pager = ToolsListPager()
        cursor: str | None = None
        while True:
            result = await call(client.tools_list_request(cursor))
            seen.page_bytes.append(len(json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()))
            cursor = seen.pager.feed(result)
            if cursor is None:
                break
        if self.script.tool_call is not None:
            name, args = self.script.tool_call
            seen.tool_call_result = await call(client.tools_call_request(name, args))


@dataclass
class OtaDouble:
    """An aiohttp OTA + activate endpoint (§1.3-§1.6) with scripted answers."""

    ws_url: str = "ws://127.0.0.1:9/xiaozhi/v1/"
    token: str = ""
    version: int | None = None
    activation: dict[str, Any] | None = None
    activate_statuses: list[int] = field(default_factory=list)
    """Answers to successive /activate calls; once 200 is given, activation stops."""
    status: int = 200
    body: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    drop_websocket: bool = False
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    paired: bool = False
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/xiaozhi/ota/", self._ota)
        app.router.add_post("/xiaozhi/ota/activate", self._activate)
        return app

    async def _ota(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(("ota", dict(request.headers), body))
        if self.body is not None or self.status != 200:
            return web.Response(status=self.status, body=self.body or b"nope")
        reply: dict[str, Any] = {
            "server_time": {"timestamp": 1767225600000, "timezone_offset": 480},
            "firmware": {"version": "2.0.3", "url": ""},
        }
        if not self.drop_websocket:
            reply["websocket"] = {"url": self.ws_url, "token": self.token}
            if self.version is not None:
                reply["websocket"]["version"] = self.version
        if self.activation is not None and not self.paired:
            reply["activation"] = self.activation
        return web.json_response(reply | self.extra)

    async def _activate(self, request: web.Request) -> web.Response:
        self.requests.append(("activate", dict(request.headers), await request.read()))
        status = self.activate_statuses.pop(0) if self.activate_statuses else 202
        if status == 200:
            self.paired = True
        return web.Response(status=status, text="success" if status == 200 else "pending")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OtaDouble]:
        runner = web.AppRunner(self.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/xiaozhi/ota/"
        try:
            yield self
        finally:
            await runner.cleanup()
