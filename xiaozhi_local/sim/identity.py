"""Who the simulated device is, and what it tells the OTA endpoint (protocol.md §1.3).

Pure: no I/O. :class:`DeviceIdentity` holds the MAC (``Device-Id``), the UUID v4
(``Client-Id``, NVS ``board/uuid`` on a real board) and the board/firmware names used in
``User-Agent`` and in the MCP ``serverInfo`` (§4.2). :func:`ota_headers` and
:func:`system_info` build the §1.3 request exactly as ``Ota::SetupHttp`` /
``Board::GetSystemInfoJson`` shape it, for a device **without** an efuse serial number
(``Activation-Version: 1``, no ``Serial-Number`` header, activation body ``{}``, §1.6).
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from typing import Any, Final

from xiaozhi_local.errors import SimulatorError

__all__ = [
    "DEFAULT_BOARD",
    "DEFAULT_FIRMWARE_VERSION",
    "DeviceIdentity",
    "normalize_mac",
    "ota_headers",
    "random_mac",
    "system_info",
]

DEFAULT_BOARD: Final = "bread-compact-wifi"
DEFAULT_FIRMWARE_VERSION: Final = "2.0.3"
_MAC_RE: Final = re.compile(r"[0-9a-f]{12}")
_ELF_SHA256: Final = "5a1c0ffee0ddba11" * 4  # a fixed, obviously fake firmware hash


def random_mac(rng: random.Random | None = None) -> str:
    """A random *locally administered*, unicast MAC in the firmware's form (``aa:bb:…``).

    Bit 1 of the first octet set (locally administered) and bit 0 clear (unicast), so it
    can never collide with a real vendor-assigned address.
    """
    r = rng or random.SystemRandom()
    octets = [r.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] | 0x02) & 0xFE
    return ":".join(f"{o:02x}" for o in octets)


def normalize_mac(text: str) -> str:
    """``AA-BB-CC-DD-EE-FF`` / ``aabb.ccdd.eeff`` / ``AABBCCDDEEFF`` → ``aa:bb:cc:dd:ee:ff`` (§1.3).

    Raises :class:`SimulatorError` when ``text`` is not 12 hex digits.
    """
    digits = re.sub(r"[:\-.\s]", "", text.strip().lower())
    if not _MAC_RE.fullmatch(digits):
        raise SimulatorError(f"{text!r} is not a MAC address; use the form aa:bb:cc:dd:ee:ff")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """The identity a stock device presents (§1.3, §2.1)."""

    mac: str
    client_id: str
    board_type: str = DEFAULT_BOARD
    board_name: str = DEFAULT_BOARD
    firmware_version: str = DEFAULT_FIRMWARE_VERSION
    language: str = "zh-CN"

    @classmethod
    def create(cls, mac: str | None = None, *, rng: random.Random | None = None, **kwargs: Any) -> DeviceIdentity:
        """A new identity: ``mac`` normalised (random when None) and a fresh UUID v4."""
        client_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng else str(uuid.uuid4())
        return cls(mac=normalize_mac(mac) if mac else random_mac(rng), client_id=client_id, **kwargs)

    @property
    def user_agent(self) -> str:
        """``<BOARD_NAME>/<firmware version>``, e.g. ``bread-compact-wifi/2.0.3``."""
        return f"{self.board_name}/{self.firmware_version}"


def ota_headers(identity: DeviceIdentity) -> dict[str, str]:
    """The §1.3 headers of ``Ota::SetupHttp`` for a board without an efuse serial number."""
    return {
        "Activation-Version": "1",
        "Device-Id": identity.mac,
        "Client-Id": identity.client_id,
        "User-Agent": identity.user_agent,
        "Accept-Language": identity.language,
        "Content-Type": "application/json",
    }


def system_info(identity: DeviceIdentity, *, ip: str = "127.0.0.1") -> dict[str, Any]:
    """The OTA request body (§1.3): ``Board::GetSystemInfoJson`` plus the Wi-Fi board block.

    Values describe an ESP32-S3 with 16 MB flash and a 240x240 colour display; note that
    ``minimum_free_heap_size`` is a **string** on real firmware.
    """
    mb = 1024 * 1024
    return {
        "version": 2,
        "language": identity.language,
        "flash_size": 16 * mb,
        "minimum_free_heap_size": "8318916",
        "mac_address": identity.mac,
        "uuid": identity.client_id,
        "chip_model_name": "esp32s3",
        "chip_info": {"model": 9, "cores": 2, "revision": 2, "features": 18},
        "application": {
            "name": "xiaozhi",
            "version": identity.firmware_version,
            "compile_time": "Aug  8 2026T12:00:00Z",
            "idf_version": "v5.5.1",
            "elf_sha256": _ELF_SHA256,
        },
        "partition_table": [
            {"label": "nvs", "type": 1, "subtype": 2, "address": 0x9000, "size": 0x4000},
            {"label": "otadata", "type": 1, "subtype": 0, "address": 0xD000, "size": 0x2000},
            {"label": "phy_init", "type": 1, "subtype": 1, "address": 0xF000, "size": 0x1000},
            {"label": "ota_0", "type": 0, "subtype": 16, "address": 0x20000, "size": 4 * mb},
            {"label": "ota_1", "type": 0, "subtype": 17, "address": 0x420000, "size": 4 * mb},
            {"label": "assets", "type": 1, "subtype": 130, "address": 0x820000, "size": 8 * mb - 0x20000},
        ],
        "ota": {"label": "ota_0"},
        "display": {"monochrome": False, "width": 240, "height": 240},
        "board": {
            "type": identity.board_type,
            "name": identity.board_name,
            "ssid": "xiaozhi-lab",
            "rssi": -52,
            "channel": 6,
            "ip": ip,
            "mac": identity.mac,
        },
    }
