"""Device → server message dataclasses (protocol.md §2.2, §2.5).

Each has a class-level ``type`` and a ``to_dict()`` giving the firmware's wire shape (the
simulator uses it; :func:`~xiaozhi_local.protocol.messages.parse_client_message` inverts it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from xiaozhi_local.protocol.audio_params import UPLINK_DEFAULT, AudioParams
from xiaozhi_local.protocol.types import ListenMode, ListenState, MessageType

__all__ = [
    "Abort",
    "ClientMessage",
    "Goodbye",
    "Hello",
    "Listen",
    "Mcp",
    "Ping",
    "Unknown",
]


def _with_session(session_id: str | None, body: dict[str, Any]) -> dict[str, Any]:
    return ({"session_id": session_id} if session_id is not None else {}) | body


@dataclass(frozen=True, slots=True)
class Hello:
    """Device hello (§2.2). ``version`` is the binary protocol version (1, 2 or 3)."""

    version: int = 1
    features: dict[str, Any] = field(default_factory=dict)
    transport: str = "websocket"
    audio_params: AudioParams | None = None
    session_id: str | None = None
    type: ClassVar[MessageType] = MessageType.HELLO

    @property
    def mcp(self) -> bool:
        """True when the device advertises an MCP server (``features.mcp``, §2.2, §8 item 9)."""
        return self.features.get("mcp") is True

    @property
    def aec(self) -> bool:
        """True when the device wants server-side AEC (``features.aec``)."""
        return self.features.get("aec") is True

    @property
    def effective_audio_params(self) -> AudioParams:
        """The announced uplink params, or the stock defaults when none were sent."""
        return self.audio_params if self.audio_params is not None else UPLINK_DEFAULT

    def to_dict(self) -> dict[str, Any]:
        """The firmware's wire shape (used by the simulator)."""
        body: dict[str, Any] = {"type": "hello", "version": self.version}
        if self.features:
            body["features"] = dict(self.features)
        body["transport"] = self.transport
        if self.audio_params is not None:
            body["audio_params"] = self.audio_params.to_dict()
        return _with_session(self.session_id, body)


@dataclass(frozen=True, slots=True)
class Listen:
    """``listen`` start / stop / detect (§2.5). ``mode`` accompanies start; ``text`` detect."""

    state: ListenState
    mode: ListenMode | None = None
    text: str | None = None
    session_id: str | None = None
    type: ClassVar[MessageType] = MessageType.LISTEN

    def to_dict(self) -> dict[str, Any]:
        """The firmware's wire shape."""
        body: dict[str, Any] = {"type": "listen", "state": str(self.state)}
        if self.mode is not None:
            body["mode"] = str(self.mode)
        if self.text is not None:
            body["text"] = self.text
        return _with_session(self.session_id, body)


@dataclass(frozen=True, slots=True)
class Abort:
    """``abort`` (§2.5); ``reason`` is e.g. ``"wake_word_detected"``."""

    reason: str | None = None
    session_id: str | None = None
    type: ClassVar[MessageType] = MessageType.ABORT

    def to_dict(self) -> dict[str, Any]:
        """The firmware's wire shape."""
        body: dict[str, Any] = {"type": "abort"}
        if self.reason is not None:
            body["reason"] = self.reason
        return _with_session(self.session_id, body)


@dataclass(frozen=True, slots=True)
class Mcp:
    """``mcp`` envelope (§4.1); ``payload`` is the JSON-RPC object, unchecked here."""

    payload: dict[str, Any]
    session_id: str | None = None
    type: ClassVar[MessageType] = MessageType.MCP

    def to_dict(self) -> dict[str, Any]:
        """The firmware's wire shape."""
        return _with_session(self.session_id, {"type": "mcp", "payload": self.payload})


@dataclass(frozen=True, slots=True)
class Goodbye:
    """``goodbye`` (§2.5, §3.5). Over WebSocket the device closes the socket instead."""

    session_id: str | None = None
    type: ClassVar[MessageType] = MessageType.GOODBYE

    def to_dict(self) -> dict[str, Any]:
        """The firmware's wire shape."""
        return _with_session(self.session_id, {"type": "goodbye"})


@dataclass(frozen=True, slots=True)
class Ping:
    """Application-level ``ping`` from some non-device clients (§2.5, "non-device extras")."""

    session_id: str | None = None
    type: ClassVar[MessageType] = MessageType.PING

    def to_dict(self) -> dict[str, Any]:
        """Wire shape."""
        return _with_session(self.session_id, {"type": "ping"})


@dataclass(frozen=True, slots=True)
class Unknown:
    """Any other ``type`` (e.g. legacy ``iot``, §4.9): the caller logs it and carries on."""

    type: str
    raw: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The message as received."""
        return dict(self.raw)


ClientMessage = Hello | Listen | Abort | Mcp | Goodbye | Ping | Unknown
