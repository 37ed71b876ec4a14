"""OTA check-version and activation, pure parts (protocol.md §1.3-§1.7, §8 items 1-3).

* :func:`parse_ota_request` reads what a device tells us in the §1.3 headers and body. It
  **never raises**: a missing, empty, non-JSON or non-object body is treated as ``{}`` and the
  reason is kept in :attr:`OtaRequest.body_error` for logging (§8 item 1).
* :func:`build_ota_reply` builds the §1.4 answer: always ``server_time`` and ``firmware``,
  **exactly one** transport section (``websocket``), and ``activation`` only from an
  :class:`Activation`, which cannot exist without both ``code`` and ``challenge`` (§1.6 4).
* :func:`parse_activate_body` (from :mod:`.activation`) reads a ``POST …/activate`` body:
  ``{}`` (no serial number), the v2 HMAC body, or py-xiaozhi's ``{"Payload": {…}}`` (§1.6).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from xiaozhi_local.protocol.activation import (
    ActivateRequest,
    parse_activate_body,
    verify_activation_hmac,
)

__all__ = [
    "MAX_BODY_BYTES",
    "ActivateRequest",
    "Activation",
    "OtaRequest",
    "build_ota_reply",
    "is_loopback_url",
    "is_mac",
    "parse_activate_body",
    "parse_ota_request",
    "verify_activation_hmac",
]

MAX_BODY_BYTES: Final = 64 * 1024
"""Bodies above this are not parsed (a real system-info body is a few KiB)."""

_MAC_RE: Final = re.compile(r"[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}")
_DIGITS_RE: Final = re.compile(r"[0-9]+")


def is_mac(s: object) -> bool:
    """True for ``aa:bb:cc:dd:ee:ff`` (either case; ``-`` also accepted, not mixed)."""
    return isinstance(s, str) and _MAC_RE.fullmatch(s) is not None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Works for plain dicts as well as case-insensitive multidicts.
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted and isinstance(value, str):
            text = value.strip()
            return text or None
    return None


def _path(obj: Mapping[str, Any], *keys: str) -> str | None:
    node: Any = obj
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    if isinstance(node, str) and node.strip():
        return node.strip()
    return None


def _norm_id(value: str | None) -> str | None:
    if value is None:
        return None
    return value.lower() if is_mac(value) else value


@dataclass(frozen=True, slots=True)
class OtaRequest:
    """What one OTA check-version request told us (§1.3). Every field may be None."""

    device_id: str | None
    """``Device-Id`` header, else body ``mac_address``; MACs are lower-cased."""
    client_id: str | None
    """``Client-Id`` header, else body ``uuid``."""
    activation_version: str | None
    """Raw ``Activation-Version`` header: "1"/"2" from firmware, an app version from
    py-xiaozhi (§7)."""
    serial_number: str | None
    user_agent: str | None
    board_name: str | None
    """From ``User-Agent: <board>/<version>``."""
    firmware_version: str | None
    """From the ``User-Agent`` (the part after the last ``/``)."""
    app_version: str | None
    """Body ``application.version``: the running firmware version."""
    board_type: str | None
    """Body ``board.type``."""
    language: str | None
    """``Accept-Language`` header, else body ``language``."""
    body: dict[str, Any] = field(default_factory=dict)
    body_error: str | None = None
    """Why the body was treated as ``{}`` (None when it parsed, or was simply empty)."""

    @property
    def current_version(self) -> str | None:
        """The version to echo in ``firmware.version``: body first, then User-Agent."""
        return self.app_version or self.firmware_version

    @property
    def device_id_is_mac(self) -> bool:
        """True when the device id looks like a MAC (the Java manager requires it, §1.7)."""
        return is_mac(self.device_id)


def _load_body(body: bytes | None, limit: int) -> tuple[dict[str, Any], str | None]:
    if not body or not body.strip():
        return {}, None
    if len(body) > limit:
        return {}, f"body of {len(body)} bytes is over {limit}"
    try:
        obj = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return {}, "body is not UTF-8"
    except (ValueError, RecursionError):
        return {}, "body is not JSON"
    if not isinstance(obj, dict):
        return {}, "body is not a JSON object"
    return obj, None


def parse_ota_request(
    headers: Mapping[str, str],
    body: bytes | None,
    content_type: str | None = None,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> OtaRequest:
    """Read an OTA (or activate) request tolerantly (§1.3). Never raises.

    The body is parsed as JSON whatever ``content_type`` says (some clients omit it); the
    content type only makes the ``body_error`` message more helpful.
    """
    obj, error = _load_body(body, max_body_bytes)
    if error is not None and content_type and "json" not in content_type.lower():
        error = f"{error} (content-type {content_type[:40]})"
    user_agent = _header(headers, "User-Agent")
    board_name = firmware_version = None
    if user_agent and "/" in user_agent:
        head, _, tail = user_agent.rpartition("/")
        board_name = head.strip() or None
        firmware_version = tail.strip() or None
    return OtaRequest(
        device_id=_norm_id(_header(headers, "Device-Id") or _path(obj, "mac_address")),
        client_id=_header(headers, "Client-Id") or _path(obj, "uuid"),
        activation_version=_header(headers, "Activation-Version"),
        serial_number=_header(headers, "Serial-Number"),
        user_agent=user_agent,
        board_name=board_name,
        firmware_version=firmware_version,
        app_version=_path(obj, "application", "version"),
        board_type=_path(obj, "board", "type"),
        language=_header(headers, "Accept-Language") or _path(obj, "language"),
        body=obj,
        body_error=error,
    )


@dataclass(frozen=True, slots=True)
class Activation:
    """The ``activation`` block (§1.4, §1.6). Both ``code`` and ``challenge`` are required:
    without ``challenge`` the device's ``Activate()`` fails forever (§1.6 item 4).

    ``code`` must be digits (the device speaks only 0-9). ``message`` is shown on screen and
    defaults to the code. ``timeout_ms`` is parsed but unused by current firmware.
    """

    code: str
    challenge: str
    message: str | None = None
    timeout_ms: int = 30000

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _DIGITS_RE.fullmatch(self.code):
            raise ValueError("activation code must be a non-empty string of digits")
        if not isinstance(self.challenge, str) or not self.challenge:
            raise ValueError("activation challenge must be a non-empty string")
        if self.message is not None and not isinstance(self.message, str):
            raise ValueError("activation message must be a string")
        if isinstance(self.timeout_ms, bool) or not isinstance(self.timeout_ms, int):
            raise TypeError("activation timeout_ms must be an int")
        if self.timeout_ms < 0:
            raise ValueError("activation timeout_ms must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """The wire shape: ``{code, message, challenge, timeout_ms}``."""
        return {
            "code": self.code,
            "message": self.message if self.message is not None else self.code,
            "challenge": self.challenge,
            "timeout_ms": self.timeout_ms,
        }


def is_loopback_url(url: str) -> bool:
    """True when ``url`` points at this host only (``localhost``, 127/8, ::1, 0.0.0.0).

    Such a URL is useless to a real device (§1.5); callers should warn.
    """
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1", "0.0.0.0") or host.startswith("127.") or host.endswith(".localhost")


def build_ota_reply(
    *,
    now_ms: int,
    tz_offset_min: int,
    firmware_version: str,
    websocket_url: str,
    token: str,
    protocol_version: int | None,
    activation: Activation | None,
) -> dict[str, Any]:
    """The OTA answer (§1.4, §1.5, §8 items 1-3).

    ``firmware_version`` should echo the device's own version (no update); ``url`` is ``""``
    and ``force`` 0. ``protocol_version`` (1/2/3), when given, is stored by the device as
    ``websocket/version`` and selects the binary layout (§2.3). Only a ``websocket`` section is
    emitted, so the device cannot fall back to MQTT (§1.4 "Transport choice").
    """
    for name, value in (("now_ms", now_ms), ("tz_offset_min", tz_offset_min)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int")
    if not isinstance(firmware_version, str):
        raise TypeError("firmware_version must be a str (the device requires a string)")
    if not isinstance(token, str):
        raise TypeError("token must be a str ('' for none)")
    if urlsplit(websocket_url).scheme not in ("ws", "wss"):
        raise ValueError(f"websocket_url must be ws:// or wss://, got {websocket_url!r}")
    if len(websocket_url) < 10:
        raise ValueError("websocket_url is too short for the device")
    if activation is not None and not isinstance(activation, Activation):
        raise TypeError("activation must be an Activation")
    websocket: dict[str, Any] = {"url": websocket_url, "token": token}
    if protocol_version is not None:
        if protocol_version not in (1, 2, 3) or isinstance(protocol_version, bool):
            raise ValueError(f"protocol_version must be 1, 2 or 3, got {protocol_version!r}")
        websocket["version"] = protocol_version
    reply: dict[str, Any] = {
        "server_time": {"timestamp": now_ms, "timezone_offset": tz_offset_min},
        "firmware": {"version": firmware_version, "url": "", "force": 0},
        "websocket": websocket,
    }
    if activation is not None:
        reply["activation"] = activation.to_dict()
    return reply
