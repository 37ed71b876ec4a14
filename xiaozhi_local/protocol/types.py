"""Message-kind enums shared by the parser and the builders (protocol.md §2.5, §2.6)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ListenMode", "ListenState", "MessageType", "TtsState"]


class MessageType(StrEnum):
    """The ``type`` of a JSON text message, both directions (§2.5, §2.6)."""

    HELLO = "hello"
    LISTEN = "listen"
    ABORT = "abort"
    MCP = "mcp"
    GOODBYE = "goodbye"
    PING = "ping"
    PONG = "pong"
    STT = "stt"
    LLM = "llm"
    TTS = "tts"
    SYSTEM = "system"
    ALERT = "alert"
    CUSTOM = "custom"
    IOT = "iot"


class ListenState(StrEnum):
    """``listen.state`` (§2.5)."""

    START = "start"
    STOP = "stop"
    DETECT = "detect"


class ListenMode(StrEnum):
    """``listen.mode`` (§2.5): server VAD, push-to-talk, or full duplex with AEC."""

    AUTO = "auto"
    MANUAL = "manual"
    REALTIME = "realtime"


class TtsState(StrEnum):
    """``tts.state`` (§2.6). ``sentence_end`` is ignored by current firmware."""

    START = "start"
    SENTENCE_START = "sentence_start"
    SENTENCE_END = "sentence_end"
    STOP = "stop"
