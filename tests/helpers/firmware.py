"""What stock firmware sends to the OTA endpoint (protocol.md §1.3), as test fixtures.

Written from the protocol notes, deliberately not from our simulator, so that tests of the
server's parsing do not inherit the simulator's habits.
"""

from __future__ import annotations

from typing import Any

MAC = "a0:85:e3:f4:49:34"
UUID = "6f1c2b9e-3d4a-4c5b-9e8f-0a1b2c3d4e5f"

FIRMWARE_HEADERS = {  # a board without an efuse serial number (Activation-Version 1)
    "Activation-Version": "1",
    "Device-Id": MAC,
    "Client-Id": UUID,
    "User-Agent": "bread-compact-wifi/2.0.3",
    "Accept-Language": "zh-CN",
    "Content-Type": "application/json",
}

FIRMWARE_BODY: dict[str, Any] = {  # §1.3 Board::GetSystemInfoJson + GetBoardJson
    "version": 2,
    "language": "zh-CN",
    "flash_size": 16777216,
    "minimum_free_heap_size": "8318916",
    "mac_address": MAC,
    "uuid": UUID,
    "chip_model_name": "esp32s3",
    "chip_info": {"model": 9, "cores": 2, "revision": 2, "features": 18},
    "application": {"name": "xiaozhi", "version": "2.0.3", "compile_time": "Jan 22 2026T20:40:23Z",
                    "idf_version": "v5.4.2", "elf_sha256": "a" * 64},
    "partition_table": [{"label": "nvs", "type": 1, "subtype": 2, "address": 36864, "size": 16384}],
    "ota": {"label": "ota_0"},
    "display": {"monochrome": False, "width": 240, "height": 240},
    "board": {"type": "bread-compact-wifi", "name": "bread-compact-wifi", "ssid": "home", "rssi": -55,
              "channel": 1, "ip": "192.168.1.23", "mac": MAC},
}
