"""The ``POST <ota_url>/activate`` body (protocol.md §1.6 item 3, §1.7, §7).

Accepted: an empty body or ``{}`` (devices without an efuse serial number); the v2 HMAC body
``{"algorithm":"hmac-sha256","serial_number","challenge","hmac":<64 hex>}``; and the same
wrapped as ``{"Payload":{…}}`` (py-xiaozhi). Anything else raises
:class:`~xiaozhi_local.errors.ActivationBodyError` (answer HTTP 400).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Final

from xiaozhi_local.errors import ActivationBodyError

__all__ = ["ActivateRequest", "parse_activate_body", "verify_activation_hmac"]

_HEX64_RE: Final = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class ActivateRequest:
    """A parsed ``/activate`` body (§1.6 item 3). All None for the v1 body ``{}``."""

    algorithm: str | None = None
    serial_number: str | None = None
    challenge: str | None = None
    hmac: str | None = None

    @property
    def is_v2(self) -> bool:
        """True for the HMAC body sent by devices with an efuse serial number."""
        return self.hmac is not None


_V2_KEYS: Final = ("algorithm", "serial_number", "challenge", "hmac")


def parse_activate_body(body: bytes | None, *, max_body_bytes: int = 4096) -> ActivateRequest:
    """Parse an ``/activate`` body; raise :class:`ActivationBodyError` when it is unusable.

    Accepted: empty or ``{}`` (v1); ``{"algorithm":"hmac-sha256","serial_number",
    "challenge","hmac":<64 hex>}`` (v2); the same wrapped as ``{"Payload":{…}}`` (py-xiaozhi).
    A v2 body must carry all four string fields.
    """
    if not body or not body.strip():
        return ActivateRequest()
    if len(body) > max_body_bytes:
        raise ActivationBodyError(f"activate body over {max_body_bytes} bytes")
    try:
        obj = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ActivationBodyError("activate body is not JSON") from None
    if not isinstance(obj, dict):
        raise ActivationBodyError("activate body is not a JSON object")
    if "Payload" in obj:
        obj = obj["Payload"]
        if not isinstance(obj, dict):
            raise ActivationBodyError("activate body Payload is not a JSON object")
    present = [k for k in _V2_KEYS if k in obj]
    if not present:
        return ActivateRequest()
    missing = [k for k in _V2_KEYS if not isinstance(obj.get(k), str) or not obj[k]]
    if missing:
        raise ActivationBodyError(f"activate body lacks string field(s): {', '.join(missing)}")
    if obj["algorithm"].lower() != "hmac-sha256":
        raise ActivationBodyError(f"unsupported activation algorithm {obj['algorithm'][:32]!r}")
    if not _HEX64_RE.fullmatch(obj["hmac"]):
        raise ActivationBodyError("activate hmac must be 64 hex characters")
    return ActivateRequest(
        algorithm=obj["algorithm"].lower(),
        serial_number=obj["serial_number"],
        challenge=obj["challenge"],
        hmac=obj["hmac"].lower(),
    )


def verify_activation_hmac(key: bytes, request: ActivateRequest, challenge: str) -> bool:
    """True when ``request`` signs ``challenge`` (the one we issued) with ``key``.

    Only possible when the server knows the device's efuse HMAC_KEY0 (§1.7); DIY boards send
    ``{}`` and cannot be verified. Constant-time comparison.
    """
    if request.hmac is None or request.challenge != challenge:
        return False
    expected = hmac.new(key, challenge.encode("utf-8"), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.hmac)
