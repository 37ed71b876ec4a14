"""Builders for server → device JSON messages (protocol.md §2.2, §2.6).

Every builder returns a plain ``dict`` ready for :func:`to_json`. Arguments are checked
because the firmware is strict about some of them (a hello without ``transport`` crashes it;
an ``alert`` needs three strings); a bad argument is *our* bug, so it raises
:class:`TypeError` / :class:`ValueError`, never :class:`ProtocolError`.

``session_id`` is optional on everything but the hello: the firmware stores the hello's value
and does not check it on the other messages (§2.6); MQTT ``goodbye`` is the exception.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Protocol

from xiaozhi_local.protocol.audio_params import (
    DOWNLINK_DEFAULT,
    AudioParams,
    audio_params_problem,
)
from xiaozhi_local.protocol.types import TtsState

__all__ = [
    "EMOTIONS",
    "build_alert",
    "build_goodbye",
    "build_hello",
    "build_llm",
    "build_mcp",
    "build_pong",
    "build_stt",
    "build_system_reboot",
    "build_tts_sentence_end",
    "build_tts_sentence_start",
    "build_tts_start",
    "build_tts_stop",
    "to_json",
]

EMOTIONS: Final = frozenset(
    {
        "neutral", "happy", "laughing", "funny", "sad", "angry", "crying", "loving",
        "embarrassed", "surprised", "shocked", "thinking", "winking", "cool", "relaxed",
        "delicious", "kissy", "confident", "sleepy", "silly", "confused",
    }
)  # fmt: skip
"""Emotion names the stock firmware has faces for (§2.6). Others fall back on the device."""


class _HasToDict(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def _need_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def _msg(kind: str, session_id: str | None, **fields: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": kind}
    msg.update(fields)
    if session_id is not None:
        msg["session_id"] = _need_str("session_id", session_id)
    return msg


def build_hello(
    session_id: str,
    audio_params: AudioParams = DOWNLINK_DEFAULT,
    *,
    transport: str = "websocket",
) -> dict[str, Any]:
    """Server hello (§2.2, §8 item 5): ``type``, ``transport``, ``session_id`` and the params
    of what we **really** encode (default Opus 24 kHz mono 60 ms).

    ``transport`` must be ``"websocket"`` (or ``"udp"`` for the MQTT hello, §3.3, whose
    ``udp`` block the caller adds).
    """
    _need_str("session_id", session_id)
    if transport not in ("websocket", "udp"):
        raise ValueError(f"transport must be 'websocket' or 'udp', got {transport!r}")
    problem = audio_params_problem(audio_params)
    if problem is not None:
        raise ValueError(problem)
    return {
        "type": "hello",
        "transport": transport,
        "session_id": session_id,
        "audio_params": audio_params.to_dict(),
    }


def build_stt(
    text: str,
    session_id: str | None = None,
    *,
    glyph_push: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``stt``: show what the user said (§2.6). ``glyph_push`` is the optional font extension."""
    msg = _msg("stt", session_id, text=_need_str("text", text))
    if glyph_push is not None:
        msg["glyph_push"] = dict(glyph_push)
    return msg


def build_llm(emotion: str, text: str, session_id: str | None = None) -> dict[str, Any]:
    """``llm``: set the face (§2.6). Only ``emotion`` is used by the device; ``text`` is the
    emoji. Unknown emotion names are allowed (see :data:`EMOTIONS`)."""
    return _msg(
        "llm",
        session_id,
        emotion=_need_str("emotion", emotion),
        text=_need_str("text", text),
    )


def build_tts_start(session_id: str | None = None) -> dict[str, Any]:
    """``tts start``: the device enters *speaking*; send before any audio of a turn (§2.4)."""
    return _msg("tts", session_id, state=str(TtsState.START))


def build_tts_sentence_start(
    text: str,
    session_id: str | None = None,
    *,
    glyph_push: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``tts sentence_start``: subtitle of the sentence whose audio follows (§2.6)."""
    msg = _msg(
        "tts",
        session_id,
        state=str(TtsState.SENTENCE_START),
        text=_need_str("text", text),
    )
    if glyph_push is not None:
        msg["glyph_push"] = dict(glyph_push)
    return msg


def build_tts_sentence_end(text: str | None = None, session_id: str | None = None) -> dict[str, Any]:
    """``tts sentence_end``: ignored by current firmware, used by some web clients (§2.6)."""
    msg = _msg("tts", session_id, state=str(TtsState.SENTENCE_END))
    if text is not None:
        msg["text"] = _need_str("text", text)
    return msg


def build_tts_stop(session_id: str | None = None) -> dict[str, Any]:
    """``tts stop``: end of the turn's audio (§2.6)."""
    return _msg("tts", session_id, state=str(TtsState.STOP))


def build_mcp(payload: Mapping[str, Any], session_id: str | None = None) -> dict[str, Any]:
    """``mcp`` envelope around one JSON-RPC object (§4.1)."""
    if not isinstance(payload, Mapping):
        raise TypeError("payload must be a mapping (a JSON-RPC object)")
    return _msg("mcp", session_id, payload=dict(payload))


def build_alert(status: str, message: str, emotion: str) -> dict[str, Any]:
    """``alert`` (§2.6). **All three fields are required strings** on the device."""
    return {
        "type": "alert",
        "status": _need_str("status", status),
        "message": _need_str("message", message),
        "emotion": _need_str("emotion", emotion),
    }


def build_system_reboot() -> dict[str, Any]:
    """``system`` with ``command: reboot``, the only system command (§2.6)."""
    return {"type": "system", "command": "reboot"}


def build_pong(timestamp_ms: int) -> dict[str, Any]:
    """Answer to the non-device ``ping`` extra (§2.5): ``{"type":"pong","timestamp":…}``."""
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int):
        raise TypeError("timestamp_ms must be an int")
    return {"type": "pong", "timestamp": timestamp_ms}


def build_goodbye(session_id: str) -> dict[str, Any]:
    """``goodbye`` (MQTT only, §3.5): the device closes UDP if ``session_id`` matches."""
    return {"type": "goodbye", "session_id": _need_str("session_id", session_id)}


def to_json(message: Mapping[str, Any] | _HasToDict) -> str:
    """Compact JSON text for one message: no spaces, UTF-8 kept as-is, NaN refused."""
    obj = message if isinstance(message, Mapping) else message.to_dict()
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
