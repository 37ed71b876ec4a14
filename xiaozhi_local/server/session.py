"""One device's WebSocket session (protocol.md §2): hello, dispatch, audio, MCP, closing.

The session owns the socket. It answers the device's hello within the firmware's 10 s,
decodes uplink opus to 16 kHz PCM for the conversation, routes ``listen``/``abort``/``mcp``
messages, and sends replies through the :class:`Downlink`. Protocol damage closes the
socket with a close code and a reason; nothing here can affect another session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..audio.clock import Clock, MonotonicClock
from ..audio.opus import OpusDecoder
from ..errors import AudioError, ProtocolError
from ..pipeline.conversation import PCM, UPLINK_RATE, Conversation, ConversationFactory, SessionInfo
from ..protocol.audio_params import DOWNLINK_DEFAULT, validate_audio_params
from ..protocol.client_messages import Abort, Goodbye, Hello, Listen, Mcp, Ping, Unknown
from ..protocol.framing import FrameCodec, negotiate_version
from ..protocol.messages import parse_client_message
from ..protocol.outgoing import build_hello, build_llm, build_pong, build_stt, to_json
from ..protocol.types import ListenMode, ListenState
from .context import ServerContext
from .device_mcp import DeviceMcp
from .downlink import Downlink

log = logging.getLogger(__name__)

MAX_BAD_PACKETS = 50
"""Consecutive undecodable audio frames before the session is closed (1007)."""


class Session:
    def __init__(self, ws: ServerConnection, ctx: ServerContext, factory: ConversationFactory, *,
                 device_id: str, client_id: str | None, token: str | None, header_version: str | None,
                 clock: Clock | None = None):
        self.ws = ws
        self.ctx = ctx
        self.factory = factory
        self.device_id = device_id
        self.client_id = client_id
        self.token = token
        self.header_version = header_version
        self.clock = clock or MonotonicClock()
        self.session_id = str(uuid.uuid4())
        self.address = str(ws.remote_address[0]) if ws.remote_address else "?"
        self.started = time.time()
        self.last_activity = self.clock.now()
        self.conversation: Conversation | None = None
        self.downlink: Downlink | None = None
        self.mcp = DeviceMcp(self._send_text, self.session_id)
        self._decoder: OpusDecoder | None = None
        self._codec: FrameCodec | None = None
        self._bad_packets = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    def _log(self, level: int, message: str, *args: object) -> None:
        log.log(level, "session %s device %s from %s: " + message, self.session_id[:8], self.device_id,
                self.address, *args)

    async def _send_text(self, text: str) -> None:
        await self.ws.send(text)

    async def _send_bytes(self, data: bytes) -> None:
        await self.ws.send(data)

    # ---- lifecycle ---------------------------------------------------------------------
    async def run(self) -> None:
        try:
            hello = await self._handshake()
            self._start(hello)
            await self._loop()
        except ProtocolError as exc:
            self._log(logging.WARNING, "closing %d: %s", exc.close_code, exc.reason)
            await self.ws.close(exc.close_code, exc.reason[:120])
        except ConnectionClosed:
            pass
        except Exception:
            self._log(logging.ERROR, "internal error; closing this session only")
            log.exception("session %s failed", self.session_id[:8])
            await self.ws.close(1011, "internal error")
        finally:
            await self._teardown()

    async def shutdown(self, code: int, reason: str) -> None:
        """Close from outside (server shutdown, revocation)."""
        self._closing = True
        await self.ws.close(code, reason[:120])

    async def _teardown(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.downlink is not None:
            await self.downlink.close()
        self.mcp.close()
        if self.conversation is not None:
            try:
                await self.conversation.close()
            except Exception:
                log.exception("session %s: conversation close failed", self.session_id[:8])
        self._log(logging.INFO, "ended (%s)", self.ws.close_reason or self.ws.close_code or "closed")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"{name}-{self.session_id[:8]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- hello (§2.2) ------------------------------------------------------------------
    async def _handshake(self) -> Hello:
        timeout = self.ctx.settings.hello_timeout_s
        try:
            first = await asyncio.wait_for(self.ws.recv(), timeout)
        except TimeoutError:
            raise ProtocolError(f"no hello within {timeout:.0f} s", close_code=1008) from None
        if isinstance(first, bytes):
            raise ProtocolError("binary frame before hello", close_code=1003)
        message = parse_client_message(first, self.ctx.limits.max_json_bytes)
        if not isinstance(message, Hello):
            raise ProtocolError(f"expected hello first, got {message.type}", close_code=1008)
        if message.transport != "websocket":
            raise ProtocolError("hello.transport must be websocket on this endpoint", close_code=1008)
        version = negotiate_version(self.header_version, message.version)
        if message.audio_params is not None:
            validate_audio_params(message.audio_params)
        self._codec = FrameCodec(version)
        self._decoder = OpusDecoder(sample_rate=UPLINK_RATE)
        await self._send_text(to_json(build_hello(self.session_id, DOWNLINK_DEFAULT)))
        self._log(logging.INFO, "hello: binary v%d, uplink %s, features %s", version,
                  message.effective_audio_params.to_dict(), sorted(message.features))
        return message

    def _start(self, hello: Hello) -> None:
        assert self._codec is not None
        self.downlink = Downlink(self._send_text, self._send_bytes, self._codec, self.session_id,
                                 clock=self.clock)
        self.downlink.start()
        info = SessionInfo(self.session_id, self.device_id, self.client_id, self.address,
                           self._codec.version, dict(hello.features))
        self.conversation = self.factory(info, _Sink(self), self.mcp)
        if hello.mcp:
            self._spawn(self.mcp.discover(), "mcp")
        else:
            self.mcp.ready.set()
        self._spawn(self._watch_idle(), "idle")

    # ---- the receive loop --------------------------------------------------------------
    async def _loop(self) -> None:
        async for message in self.ws:
            self.last_activity = self.clock.now()
            if isinstance(message, bytes):
                await self._on_binary(message)
            else:
                await self._on_text(message)

    async def _on_text(self, text: str) -> None:
        assert self.conversation is not None and self.downlink is not None
        message = parse_client_message(text, self.ctx.limits.max_json_bytes)
        if isinstance(message, Listen):
            if message.state is ListenState.START:
                await self.conversation.on_listen_start(message.mode or ListenMode.AUTO)
            elif message.state is ListenState.STOP:
                await self.conversation.on_listen_stop()
            else:
                await self.conversation.on_detect(message.text or "")
        elif isinstance(message, Abort):
            await self.downlink.abort()
            await self.conversation.on_abort(message.reason)
        elif isinstance(message, Mcp):
            self.mcp.on_payload(message.payload)
        elif isinstance(message, Ping):
            await self._send_text(to_json(build_pong(int(time.time() * 1000))))
        elif isinstance(message, Goodbye):
            await self.ws.close(1000, "goodbye")
        elif isinstance(message, Hello):
            self._log(logging.INFO, "second hello ignored")
        elif isinstance(message, Unknown):
            self._log(logging.INFO, "message type %r ignored", message.type[:40])

    async def _on_binary(self, data: bytes) -> None:
        assert self._codec is not None and self._decoder is not None and self.conversation is not None
        frame = self._codec.decode(data)
        try:
            pcm = self._decoder.decode(frame.payload)
        except AudioError as exc:
            self._bad_packets += 1
            if self._bad_packets == 1:
                self._log(logging.WARNING, "undecodable audio frame dropped (%s)", exc)
            if self._bad_packets >= MAX_BAD_PACKETS:
                raise ProtocolError("undecodable opus audio", close_code=1007) from None
            return
        self._bad_packets = 0
        if pcm.size:
            await self.conversation.on_audio(pcm)

    async def _watch_idle(self) -> None:
        limit = self.ctx.settings.idle_timeout_s
        while True:
            remaining = self.last_activity + limit - self.clock.now()
            if remaining <= 0:
                break
            await self.clock.sleep(min(remaining, 1.0))
        self._log(logging.INFO, "idle for %.0f s; closing", limit)
        if self.conversation is not None:
            await self.conversation.on_idle()
        if self.downlink is not None:
            await self.downlink.wait_played()
        await self.ws.close(1000, "idle timeout")


class _Sink:
    """The ReplySink a session hands its conversation."""

    def __init__(self, session: Session):
        self._s = session

    async def stt(self, text: str) -> None:
        with contextlib.suppress(ConnectionClosed):  # the session is ending; its teardown follows
            await self._s._send_text(to_json(build_stt(text, self._s.session_id)))

    async def emotion(self, emotion: str, emoji: str = "") -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._s._send_text(to_json(build_llm(emotion, emoji, self._s.session_id)))

    async def say(self, text: str, audio: PCM | AsyncIterable[PCM], sample_rate: int) -> None:
        assert self._s.downlink is not None
        await self._s.downlink.say(text, audio, sample_rate)

    async def end_reply(self) -> None:
        assert self._s.downlink is not None
        await self._s.downlink.end_reply()

    async def wait_played(self) -> None:
        assert self._s.downlink is not None
        await self._s.downlink.wait_played()

    async def abort(self) -> None:
        assert self._s.downlink is not None
        await self._s.downlink.abort()

    def reply_marks(self) -> tuple[float | None, float | None]:
        assert self._s.downlink is not None
        return self._s.downlink.first_frame_at, self._s.downlink.last_frame_at

    async def close(self, reason: str) -> None:
        await self.wait_played()
        with contextlib.suppress(ConnectionClosed):
            await self._s.ws.close(1000, reason[:120])
