"""The simulated device's WebSocket channel (protocol.md §2.1-§2.3, §2.8, §4.1).

:class:`DeviceChannel` connects like ``WebsocketProtocol::OpenAudioChannel``:

* Handshake headers ``Authorization: Bearer <token>`` (only when the token is non-empty; a
  token that already contains a space is sent as is, §1.8), ``Protocol-Version``,
  ``Device-Id``, ``Client-Id``. With ``query_auth`` it instead passes ``device-id``,
  ``client-id`` and ``authorization`` as query parameters and sends no custom header, like
  the browser test page (§2.1, §7). No ``User-Agent``, no permessage-deflate, no client
  pings and no proxy: the device's WebSocket client has none of them. Server pings are
  answered (by ``websockets``).
* Right after the upgrade it sends the §2.2 hello (version = binary protocol version,
  ``features {mcp: true}``, Opus 16 kHz mono 60 ms). The server hello must arrive within
  ``hello_timeout`` (10 s) and say ``transport: "websocket"``; otherwise :meth:`open` raises
  :class:`SimulatorError` (the firmware reports "server timeout" and drops the channel).
* Binary frames use the negotiated layout (v1/v2/v3, §2.3) in both directions.
* MCP requests are answered by a :class:`McpDeviceServer` and every call is recorded in
  :attr:`DeviceChannel.mcp_calls` (§4.1-§4.4). Every other text message goes to the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from xiaozhi_local.audio.clock import Clock, MonotonicClock
from xiaozhi_local.errors import ChannelClosedError, ProtocolError, SimulatorError
from xiaozhi_local.protocol.audio_params import UPLINK_DEFAULT
from xiaozhi_local.protocol.client_messages import ClientMessage, Hello, Mcp
from xiaozhi_local.protocol.framing import AudioFrame, FrameCodec
from xiaozhi_local.protocol.mcp_device import McpDeviceServer
from xiaozhi_local.sim.handshake import ChannelConfig, ServerHello, accept_server_hello

__all__ = ["ChannelConfig", "ChannelListener", "DeviceChannel", "McpCall", "MessageRecord", "ServerHello"]

_MAX_FRAME = 1 << 20


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One JSON message on the channel; ``summary`` drops bulky MCP payloads."""

    t: float
    direction: str  # "in" (server → device) or "out"
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class McpCall:
    """One MCP request the server made and what the simulated device answered (§4)."""

    t: float
    method: str
    id: int | float | None
    params: Any
    answered: bool
    error: str | None


class ChannelListener(Protocol):
    """Receives everything but the hello and MCP traffic."""

    def on_json(self, message: dict[str, Any], t: float) -> None: ...

    def on_audio(self, frame: AudioFrame, t: float) -> None: ...


def _summary(message: Mapping[str, Any]) -> dict[str, Any]:
    if message.get("type") != "mcp":
        return dict(message)
    payload = message.get("payload")
    payload = payload if isinstance(payload, Mapping) else {}
    keep = {k: payload[k] for k in ("id", "method") if k in payload}
    if "error" in payload:
        keep["error"] = payload["error"]
    return {"type": "mcp", **keep}


class DeviceChannel:
    """One device ↔ server WebSocket (see the module docstring)."""

    def __init__(
        self,
        config: ChannelConfig,
        mcp: McpDeviceServer,
        *,
        listener: ChannelListener | None = None,
        clock: Clock | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.codec = FrameCodec(config.protocol_version)
        self.mcp = mcp
        self.listener = listener
        self.clock: Clock = clock or MonotonicClock()
        self._log = log or (lambda _msg: None)
        self.hello: ServerHello | None = None
        self.session_id = ""
        self.messages: list[MessageRecord] = []
        self.mcp_calls: list[McpCall] = []
        self.notes: list[str] = []
        self.frames_sent = 0
        self.frames_received = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_by_device = False
        self.closed = asyncio.Event()
        self.t_connected: float | None = None
        self.t_hello: float | None = None
        self.t_closed: float | None = None
        self._ws: ClientConnection | None = None
        self._hello_future: asyncio.Future[dict[str, Any]] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._texts: list[str] = []
        self.reader_error: Exception | None = None

    async def open(self) -> ServerHello:
        """Connect, send the hello and wait for the server's (§2.1, §2.2)."""
        url, headers = self.config.connect_target()
        try:
            self._ws = await connect(
                url,
                additional_headers=headers,
                user_agent_header=None,
                compression=None,
                proxy=None,
                open_timeout=self.config.connect_timeout_s,
                ping_interval=None,
                max_size=_MAX_FRAME,
            )
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", "replace")[:200].strip() if exc.response.body else ""
            raise SimulatorError(
                f"the server refused the WebSocket upgrade at {self.config.url}: "
                f"HTTP {exc.response.status_code} {body!r}"
            ) from None
        except InvalidURI:
            raise SimulatorError(f"{self.config.url!r} is not a valid WebSocket URL") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise SimulatorError(f"cannot connect to {self.config.url}: {exc or type(exc).__name__}") from None
        self.t_connected = self.clock.now()
        self._hello_future = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_loop(), name="sim-channel-reader")
        hello = Hello(version=self.config.protocol_version, features={"mcp": True}, audio_params=UPLINK_DEFAULT)
        await self.send(hello)
        return await self._await_hello()

    async def _await_hello(self) -> ServerHello:
        assert self._hello_future is not None
        closed: asyncio.Future[Any] = asyncio.ensure_future(self.closed.wait())
        waiters: set[asyncio.Future[Any]] = {self._hello_future, closed}
        try:
            await asyncio.wait(waiters, timeout=self.config.hello_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if self._hello_future.done() and not self._hello_future.cancelled():
            try:
                self.hello = accept_server_hello(self._hello_future.result())
            except SimulatorError:
                await self.close()
                raise
            self.session_id = self.hello.session_id
            self.t_hello = self.clock.now()
            return self.hello
        if self.closed.is_set():
            raise self.closed_error("before sending its hello")
        await self.close()
        raise SimulatorError(
            f"no server hello within {self.config.hello_timeout_s:g} s of the device hello; stock firmware "
            "reports 'server timeout' and drops the channel (§2.2)"
        )

    def closed_error(self, when: str) -> SimulatorError:
        """A :class:`ChannelClosedError` describing the server's close ``when`` …"""
        if self.reader_error is not None:
            return SimulatorError(f"internal simulator error on a server message: {self.reader_error!r}")
        reason = f" {self.close_reason!r}" if self.close_reason else ""
        texts = f"; it had sent: {' | '.join(t[:80] for t in self._texts[-2:])}" if self._texts else ""
        return ChannelClosedError(
            f"the server closed the WebSocket {when} (close code {self.close_code}{reason}){texts}",
            close_code=self.close_code,
            close_reason=self.close_reason,
        )

    async def send(self, message: ClientMessage | Mapping[str, Any]) -> None:
        """Send one JSON text frame (a protocol dataclass or a plain dict)."""
        body = dict(message) if isinstance(message, Mapping) else message.to_dict()
        self.messages.append(MessageRecord(self.clock.now(), "out", _summary(body)))
        await self._send_raw(json.dumps(body, ensure_ascii=False, separators=(",", ":")))

    async def send_audio(self, opus: bytes, timestamp_ms: int = 0) -> None:
        """Send one Opus packet framed in the negotiated binary version (§2.3)."""
        await self._send_raw(self.codec.encode(opus, timestamp_ms))
        self.frames_sent += 1

    async def _send_raw(self, data: str | bytes) -> None:
        if self._ws is None or self.closed.is_set():
            raise self.closed_error("while the device was sending")
        try:
            await self._ws.send(data)
        except ConnectionClosed:
            await self._wait_reader()
            raise self.closed_error("while the device was sending") from None

    async def close(self) -> None:
        """Close from the device side (code 1000), as the firmware does to end a chat (§2.8)."""
        if self._ws is not None and not self.closed.is_set():
            self.closed_by_device = True
            await self._ws.close(1000)
        await self._wait_reader()

    async def _wait_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read_loop(self) -> None:
        assert self._ws is not None
        try:
            async for data in self._ws:
                t = self.clock.now()
                if isinstance(data, bytes):
                    await self._on_binary(data, t)
                else:
                    await self._on_text(data, t)
        except ConnectionClosed:
            pass
        except Exception as exc:  # a bug in a listener: surface it rather than hang
            self.reader_error = exc
            await self._ws.close(1011)
        finally:
            self.t_closed = self.clock.now()
            self.close_code = self._ws.close_code
            self.close_reason = self._ws.close_reason or ""
            self.closed.set()
            if self._hello_future is not None and not self._hello_future.done():
                self._hello_future.cancel()

    async def _on_binary(self, data: bytes, t: float) -> None:
        self.frames_received += 1
        try:
            frame = self.codec.decode(data)
        except ProtocolError as exc:
            self.notes.append(f"malformed v{self.config.protocol_version} binary frame dropped: {exc}")
            return
        if self.listener is not None:
            self.listener.on_audio(frame, t)

    async def _on_text(self, text: str, t: float) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            self._texts.append(text)
            self.notes.append(f"non-JSON text frame ignored by the firmware: {text[:80]!r}")
            return
        if not isinstance(message, dict):
            self.notes.append(f"JSON text frame that is not an object ignored: {text[:80]!r}")
            return
        self.messages.append(MessageRecord(t, "in", _summary(message)))
        if message.get("type") == "hello" and self._hello_future is not None and not self._hello_future.done():
            if isinstance(message.get("session_id"), str):  # stored at once, as ParseServerHello does
                self.session_id = message["session_id"]
            self._hello_future.set_result(message)
        elif message.get("type") == "mcp":
            await self._on_mcp(message.get("payload"), t)
        elif self.listener is not None:
            self.listener.on_json(message, t)

    async def _on_mcp(self, payload: object, t: float) -> None:
        """Answer one MCP request like ``McpServer::ParseMessage`` and record it (§4.1)."""
        if not isinstance(payload, Mapping):
            self.notes.append("mcp message without an object payload ignored (§4.1)")
            return
        reply = self.mcp.handle_request(payload)
        method = payload.get("method")
        raw_id = payload.get("id")
        error = reply.get("error", {}).get("message") if reply is not None else None
        call = McpCall(
            t,
            str(method),
            raw_id if isinstance(raw_id, (int, float)) else None,
            payload.get("params"),
            reply is not None,
            error,
        )
        self.mcp_calls.append(call)
        self._log(f"MCP {call.method} id={call.id}" + (f" → error {error!r}" if error else ""))
        if reply is not None:
            with contextlib.suppress(ChannelClosedError):
                await self.send(Mcp(payload=reply, session_id=self.session_id))
