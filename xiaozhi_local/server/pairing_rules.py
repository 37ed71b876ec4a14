"""Pairing decisions and credentials, pure: no sockets, no database, no clock.

:mod:`.pairing` feeds these functions what the registry holds and what a device presented, and
does what they decide. The rules (see the README's Security section):

* **OTA check-in** (:func:`ota_verdict`): a paired device that presents the Client-Id it was
  paired with gets a fresh token; anything else (unknown, revoked, or a known MAC with another
  Client-Id, e.g. after an NVS erase or from an impostor) gets a pairing code instead. Open mode
  admits every device that is not revoked.
* **Activation poll** (:func:`activation_admitted`): HTTP 200 exactly when the OTA check-in would
  now hand out a token; 202 otherwise.
* **WebSocket** (:func:`session_refusal`): paired mode needs the device's current (or previous)
  token; the close reason says what is wrong.
* **Live sessions** (:func:`revoked_reason`): a session ends when its device is revoked,
  forgotten, or paired again after the session was admitted.

Tokens are 256-bit random strings; only their SHA-256 is stored (:func:`token_hash`), which is
enough for values that random (no salt or slow hash needed), and compared in constant time.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from typing import Final, Literal

from ..store.devices import PAIRED, REVOKED, DeviceRecord

__all__ = [
    "AUTH_FAILED",
    "DEVICE_REMOVED",
    "DEVICE_REPAIRED",
    "DEVICE_REVOKED",
    "NOT_PAIRED",
    "Mode",
    "OtaVerdict",
    "activation_admitted",
    "clean_text",
    "new_token",
    "normalize_client_id",
    "normalize_device_id",
    "ota_verdict",
    "revoked_reason",
    "session_refusal",
    "token_hash",
    "token_slot",
]

Mode = Literal["paired", "open"]

NOT_PAIRED: Final = "device not paired, run `xiaozhi device pair`"
DEVICE_REVOKED: Final = "device revoked"
AUTH_FAILED: Final = "authentication failed"
DEVICE_REMOVED: Final = "device removed"
DEVICE_REPAIRED: Final = "device paired again; reconnect"

_MAC: Final = re.compile(r"[0-9a-fA-F]{2}([:-])(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}")


def normalize_device_id(device_id: str) -> str:
    """The registry key: a MAC as ``aa:bb:cc:dd:ee:ff`` (either separator, any case); any other id
    lower-cased (the WebSocket side lower-cases ids too)."""
    text = device_id.strip()
    if _MAC.fullmatch(text):
        return text.replace("-", ":").lower()
    return text.lower()


def clean_text(value: str | None, limit: int = 80) -> str | None:
    """What a device said about itself, safe to store and print: valid UTF-8 (header text may
    carry lone surrogates), no control characters, at most ``limit`` characters; None if empty."""
    if value is None:
        return None
    text = value.encode("utf-8", "replace").decode("utf-8")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)[:limit].strip()
    return text or None


def normalize_client_id(client_id: str | None) -> str:
    """Client-Id as compared: a UUID in lower case; missing = ``""``."""
    return clean_text((client_id or "").lower(), 64) or ""


def new_token() -> str:
    """A fresh WebSocket token: 256 random bits, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # header text may carry any code point


def token_hash(token: str) -> str:
    return hashlib.sha256(_utf8(token)).hexdigest()


def token_slot(record: DeviceRecord, token: str | None) -> Literal["current", "previous"] | None:
    """Which of the device's stored token hashes ``token`` matches, in constant time."""
    if not token:
        return None
    presented = token_hash(token)
    current = hmac.compare_digest(presented, record.token_hash or "")
    previous = hmac.compare_digest(presented, record.prev_token_hash or "")
    if current and record.token_hash:
        return "current"
    if previous and record.prev_token_hash:
        return "previous"
    return None


class OtaVerdict(enum.Enum):
    TOKEN = "token"
    """Admitted: issue a fresh token, no activation block."""
    RECORD_AND_TOKEN = "record"
    """Open mode, unknown device: record it as paired, then issue a token."""
    PAIRING_CODE = "code"
    """Not admitted: answer with an activation block carrying a pairing code."""


def ota_verdict(record: DeviceRecord | None, client_id: str, mode: Mode) -> OtaVerdict:
    if record is None:
        return OtaVerdict.RECORD_AND_TOKEN if mode == "open" else OtaVerdict.PAIRING_CODE
    if record.state == REVOKED:
        return OtaVerdict.PAIRING_CODE
    if mode == "open" or (record.state == PAIRED and hmac.compare_digest(_utf8(record.client_id), _utf8(client_id))):
        return OtaVerdict.TOKEN
    return OtaVerdict.PAIRING_CODE


def activation_admitted(record: DeviceRecord | None, client_id: str, mode: Mode) -> bool:
    """``/activate``: True → 200 (the next OTA check-in gets a token), False → 202."""
    if mode == "open":
        return record is None or record.state != REVOKED
    return ota_verdict(record, client_id, mode) is OtaVerdict.TOKEN


def session_refusal(record: DeviceRecord | None, token: str | None, mode: Mode) -> str | None:
    """Why a WebSocket from this device is refused (the close reason), or None to admit."""
    if record is not None and record.state == REVOKED:
        return DEVICE_REVOKED
    if mode == "open":
        return None
    if record is None or record.state != PAIRED:
        return NOT_PAIRED
    if token_slot(record, token) is None:
        return AUTH_FAILED
    return None


def revoked_reason(admitted_generation: int | None, current: tuple[str, int] | None, mode: Mode) -> str | None:
    """Why a live session must end now, given its device's (state, generation) in the registry."""
    if current is None:
        return DEVICE_REMOVED
    state, generation = current
    if state == REVOKED:
        return DEVICE_REVOKED
    if mode == "paired" and admitted_generation is not None and generation != admitted_generation:
        return DEVICE_REPAIRED
    return None
