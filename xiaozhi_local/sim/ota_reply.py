"""The OTA check-version reply as the device reads it, pure (protocol.md §1.4-§1.6).

:func:`parse_ota_reply` reads a 200 body like ``Ota::CheckVersion``: every section is
optional; ``activation`` counts only when it has a ``code`` or a ``challenge`` (§1.6 item 1).
:func:`require_websocket` decides whether a stock device would use the WebSocket transport
at all: an ``mqtt`` section wins over ``websocket`` on real firmware (§1.4 "Transport choice").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from xiaozhi_local.errors import SimulatorError

__all__ = [
    "MIN_URL_LEN",
    "ActivationInfo",
    "OtaReply",
    "WebsocketConfig",
    "activate_url",
    "parse_ota_reply",
    "require_websocket",
    "version_tuple",
]

MIN_URL_LEN: Final = 10
"""The firmware rejects shorter OTA / WebSocket URLs (§1.1)."""


@dataclass(frozen=True, slots=True)
class WebsocketConfig:
    """The ``websocket`` section (§1.4): ``version`` is None when the server sent none."""

    url: str
    token: str
    version: int | None


@dataclass(frozen=True, slots=True)
class ActivationInfo:
    """The ``activation`` section (§1.4, §1.6); any member may be missing."""

    code: str | None
    challenge: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class OtaReply:
    """One parsed check-version reply (§1.4). Every section is optional on the wire."""

    raw: dict[str, Any]
    websocket: WebsocketConfig | None
    has_mqtt: bool
    activation: ActivationInfo | None
    firmware_version: str | None
    firmware_url: str | None
    firmware_force: bool
    server_time_ms: int | None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _section(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def parse_ota_reply(body: bytes, *, url: str = "the OTA server") -> OtaReply:
    """Read a 200 reply like ``Ota::CheckVersion`` does; not JSON (object) → SimulatorError."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        snippet = body[:120].decode("utf-8", "replace")
        raise SimulatorError(f"OTA reply from {url} is not JSON: {snippet!r} (the firmware retries, §1.2)") from None
    if not isinstance(obj, dict):
        raise SimulatorError(f"OTA reply from {url} is JSON but not an object (§1.4)")
    ws = obj.get("websocket")
    websocket = None
    if isinstance(ws, Mapping) and isinstance(ws.get("url"), str):
        websocket = WebsocketConfig(url=ws["url"], token=_str(ws.get("token")) or "", version=_int(ws.get("version")))
    act = obj.get("activation")
    activation = None
    if isinstance(act, Mapping):
        code, challenge = _str(act.get("code")), _str(act.get("challenge"))
        if code or challenge:  # §1.6 item 1: the loop ends when neither is present
            activation = ActivationInfo(code=code, challenge=challenge, message=_str(act.get("message")))
    fw = _section(obj, "firmware")
    st = _section(obj, "server_time")
    return OtaReply(
        raw=obj,
        websocket=websocket,
        has_mqtt=isinstance(obj.get("mqtt"), Mapping),
        activation=activation,
        firmware_version=_str(fw.get("version")),
        firmware_url=_str(fw.get("url")),
        firmware_force=_int(fw.get("force")) == 1,
        server_time_ms=_int(st.get("timestamp")),
    )


def require_websocket(reply: OtaReply) -> WebsocketConfig:
    """The WebSocket settings a stock device would use, or SimulatorError saying why not (§1.4)."""
    if reply.has_mqtt:
        raise SimulatorError(
            "the OTA reply has an 'mqtt' section, so a stock device would use MQTT+UDP, which the "
            "simulator does not speak; a server should send exactly one transport section (§1.4, §8 item 2)"
        )
    if reply.websocket is None:
        keys = ", ".join(sorted(reply.raw)) or "none"
        raise SimulatorError(
            f"the OTA reply has no usable 'websocket' section (top-level keys: {keys}); a stock device "
            "would fall back to MQTT and fail (§1.4)"
        )
    url = reply.websocket.url
    if urlsplit(url).scheme not in ("ws", "wss") or len(url) < MIN_URL_LEN:
        raise SimulatorError(f"the OTA reply's websocket.url {url!r} is not a ws:// or wss:// URL (§2.1)")
    version = reply.websocket.version
    if version is not None and version not in (1, 2, 3):
        raise SimulatorError(f"the OTA reply's websocket.version {version} is not 1, 2 or 3 (§2.3)")
    return reply.websocket


def activate_url(ota_url: str) -> str:
    """``<ota_url>/activate``, appending ``/`` first when missing (§1.6 item 3)."""
    return ota_url + ("activate" if ota_url.endswith("/") else "/activate")


def version_tuple(version: str) -> tuple[int, ...]:
    """Dotted integers as the firmware compares them (non-numeric parts count as 0)."""
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))
