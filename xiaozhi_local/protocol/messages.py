"""Typed JSON text messages from the device (protocol.md §2.2, §2.5).

:func:`parse_client_message` turns one text frame into a frozen dataclass. The policy:

* Transport-level damage → :class:`ProtocolError`: over ``max_bytes`` → 1009; bad UTF-8,
  invalid JSON (including NaN/Infinity, absurd nesting or huge integers) → 1007; valid JSON
  that is not an object, or has a missing / non-string ``type`` → 1008.
* Unknown ``type`` (``iot``, ``server``, future ones) → :class:`Unknown`, never an error:
  the firmware itself logs and ignores unknown types (§2.6, §8 item 8).
* Known types: extra keys are ignored and missing *optional* keys take defaults. Present keys
  with the wrong JSON type, and enum values outside the documented sets (listen ``state`` /
  ``mode``), → 1008 with a reason naming the field. ``session_id`` is the exception: it is
  only an echo (the firmware ignores it on input, §4.1), so a non-string one reads as None.
* A hello with no ``audio_params`` is accepted (the browser test page sends none, §7); its
  :attr:`Hello.effective_audio_params` are the stock uplink defaults. The camelCase
  ``audioParams`` of xiaozhi-concurrent is read as an alias. Call
  :func:`validate_audio_params` to enforce the values.

Server → device builders live in :mod:`.outgoing` and are re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from xiaozhi_local.errors import ProtocolError
from xiaozhi_local.protocol.audio_params import (
    DOWNLINK_DEFAULT,
    UPLINK_DEFAULT,
    AudioParams,
    audio_params_problem,
    validate_audio_params,
)
from xiaozhi_local.protocol.client_messages import (
    Abort,
    ClientMessage,
    Goodbye,
    Hello,
    Listen,
    Mcp,
    Ping,
    Unknown,
)
from xiaozhi_local.protocol.outgoing import (
    EMOTIONS,
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
from xiaozhi_local.protocol.types import ListenMode, ListenState, MessageType, TtsState

__all__ = [
    "DOWNLINK_DEFAULT",
    "EMOTIONS",
    "MAX_MESSAGE_BYTES",
    "UPLINK_DEFAULT",
    "Abort",
    "AudioParams",
    "ClientMessage",
    "Goodbye",
    "Hello",
    "Listen",
    "ListenMode",
    "ListenState",
    "Mcp",
    "MessageType",
    "Ping",
    "TtsState",
    "Unknown",
    "audio_params_problem",
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
    "parse_client_message",
    "to_json",
    "validate_audio_params",
]

MAX_MESSAGE_BYTES: Final = 65536
"""Default cap on one text frame (the device cannot send a frame above 65535 bytes, §2.1)."""

_BAD_PAYLOAD: Final = 1007
_POLICY: Final = 1008
_TOO_BIG: Final = 1009
_PROTOCOL: Final = 1002
_LISTEN_STATES: Final = frozenset(s.value for s in ListenState)
_LISTEN_MODES: Final = frozenset(m.value for m in ListenMode)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(text: str | bytes, max_bytes: int) -> object:
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        if len(raw) > max_bytes:
            raise ProtocolError(f"text message over {max_bytes} bytes", close_code=_TOO_BIG)
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("text message is not valid UTF-8", close_code=_BAD_PAYLOAD) from None
    else:
        decoded = text
        # UTF-8 needs at least one byte per character, so only encode when it could matter.
        if len(decoded) > max_bytes or len(decoded.encode("utf-8", "surrogatepass")) > max_bytes:
            raise ProtocolError(f"text message over {max_bytes} bytes", close_code=_TOO_BIG)
    try:
        return json.loads(decoded, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc) or "error"
        raise ProtocolError(f"invalid JSON: {detail}"[:100], close_code=_BAD_PAYLOAD) from None


def _opt_str(obj: Mapping[str, Any], key: str, kind: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ProtocolError(f"{kind}.{key} must be a string", close_code=_POLICY)


def _session(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("session_id")
    return value if isinstance(value, str) else None


def _parse_hello(obj: dict[str, Any]) -> Hello:
    version = obj.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError("hello.version must be an integer", close_code=_POLICY)
    if version not in (1, 2, 3):
        raise ProtocolError(f"unsupported hello.version {version}"[:100], close_code=_PROTOCOL)
    features = obj.get("features", {})
    if features is None:
        features = {}
    if not isinstance(features, dict):
        raise ProtocolError("hello.features must be an object", close_code=_POLICY)
    transport = obj.get("transport", "websocket")
    if not isinstance(transport, str):
        raise ProtocolError("hello.transport must be a string", close_code=_POLICY)
    raw_params = obj.get("audio_params", obj.get("audioParams"))
    params = None if raw_params is None else AudioParams.from_dict(raw_params)
    return Hello(
        version=version,
        features=features,
        transport=transport,
        audio_params=params,
        session_id=_session(obj),
    )


def _parse_listen(obj: dict[str, Any]) -> Listen:
    state = obj.get("state")
    if not isinstance(state, str) or state not in _LISTEN_STATES:
        raise ProtocolError("listen.state must be start, stop or detect", close_code=_POLICY)
    mode = obj.get("mode")
    if mode is not None and (not isinstance(mode, str) or mode not in _LISTEN_MODES):
        raise ProtocolError("listen.mode must be auto, manual or realtime", close_code=_POLICY)
    return Listen(
        state=ListenState(state),
        mode=None if mode is None else ListenMode(mode),
        text=_opt_str(obj, "text", "listen"),
        session_id=_session(obj),
    )


def _parse_mcp(obj: dict[str, Any]) -> Mcp:
    payload = obj.get("payload")
    if not isinstance(payload, dict):
        raise ProtocolError("mcp.payload must be an object", close_code=_POLICY)
    return Mcp(payload=payload, session_id=_session(obj))


def parse_client_message(text: str | bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> ClientMessage:
    """Parse one device → server text frame (§2.5). See the module docstring for the policy."""
    obj = _load_json(text, max_bytes)
    if not isinstance(obj, dict):
        raise ProtocolError("message is not a JSON object", close_code=_POLICY)
    kind = obj.get("type")
    if kind is None:
        raise ProtocolError("message has no type", close_code=_POLICY)
    if not isinstance(kind, str):
        raise ProtocolError("message type is not a string", close_code=_POLICY)
    if kind == MessageType.HELLO:
        return _parse_hello(obj)
    if kind == MessageType.LISTEN:
        return _parse_listen(obj)
    if kind == MessageType.ABORT:
        return Abort(reason=_opt_str(obj, "reason", "abort"), session_id=_session(obj))
    if kind == MessageType.MCP:
        return _parse_mcp(obj)
    if kind == MessageType.GOODBYE:
        return Goodbye(session_id=_session(obj))
    if kind == MessageType.PING:
        return Ping(session_id=_session(obj))
    return Unknown(type=kind, raw=obj)
