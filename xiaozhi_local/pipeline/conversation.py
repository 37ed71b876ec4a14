"""The seam between a device session (transport) and what fills its turns (pipeline).

The session feeds a :class:`Conversation` with decoded uplink audio and the device's
listen/abort events; the conversation answers through the session's :class:`ReplySink`
(``stt``, emotion, spoken sentences, end of reply) and can call the device's MCP tools
through :class:`DeviceTools`. Neither side knows how the other works: the transport does
not know about models, the pipeline does not know about frames, opus or pacing.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..protocol.types import ListenMode

PCM = NDArray[np.int16]
UPLINK_RATE = 16000
"""Uplink audio reaches the conversation as 16 kHz mono int16, whatever the device sent."""


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    device_id: str
    client_id: str | None
    address: str
    protocol_version: int
    features: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolInfo:
    name: str
    description: str
    input_schema: dict[str, Any]


class DeviceTools(Protocol):
    """The device's own MCP tools (volume, brightness, …), as the session discovered them."""

    @property
    def tools(self) -> Sequence[ToolInfo]: ...

    async def call(self, name: str, arguments: dict[str, Any], timeout: float = 30.0) -> str:
        """Run a tool on the device; its text result, or McpToolError with the device's message."""
        ...


class ReplySink(Protocol):
    """How a conversation talks back. Calls are cheap; audio is paced by the session."""

    async def stt(self, text: str) -> None:
        """Show what the user said."""

    async def emotion(self, emotion: str, emoji: str = "") -> None:
        """Set the device's face (``llm`` message)."""

    async def say(self, text: str, audio: PCM | AsyncIterable[PCM], sample_rate: int) -> None:
        """Queue one sentence: its subtitle, then its audio (mono int16 at ``sample_rate``).

        The first sentence of a reply opens it (``tts start``). Returns once the audio is
        queued, not played; a stream is consumed as it is produced.
        """

    async def end_reply(self) -> None:
        """Close the reply: ``tts stop`` once everything queued has played."""

    async def wait_played(self) -> None:
        """Wait until the audio queued so far has finished playing on the device."""

    async def abort(self) -> None:
        """Stop the reply at once: drop queued audio, ``tts stop`` (server-side barge-in)."""

    def reply_marks(self) -> tuple[float | None, float | None]:
        """Clock times of the current (or last) reply's first and last audio frames sent."""
        ...

    async def close(self, reason: str) -> None:
        """End the session (after the reply in progress has played)."""


class Conversation(Protocol):
    """One device session's dialogue. Every method is called from the event loop."""

    async def on_audio(self, pcm: PCM) -> None:
        """A decoded uplink frame (16 kHz mono int16)."""

    async def on_listen_start(self, mode: ListenMode) -> None: ...

    async def on_listen_stop(self) -> None: ...

    async def on_detect(self, text: str) -> None:
        """``listen detect``: a wake word fired, or a text client typed something."""

    async def on_abort(self, reason: str | None) -> None:
        """The device asked to stop speaking; the session already dropped queued audio."""

    async def on_idle(self) -> None:
        """Nothing came from the device for the idle timeout; the session closes afterwards."""

    async def close(self) -> None:
        """The session is over: stop any work in progress."""


ConversationFactory = Callable[[SessionInfo, ReplySink, DeviceTools], Conversation]
