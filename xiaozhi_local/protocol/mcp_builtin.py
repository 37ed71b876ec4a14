"""The firmware's built-in MCP tools, for the simulator (protocol.md §4.5).

:func:`builtin_device_tools` returns the common tools in the firmware's order (model-visible
ones first, "board-specific" padding tools next, user-only ones last), all acting on one
mutable :class:`DeviceState`. The descriptions are our own wording; names, argument names,
types and ranges follow §4.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xiaozhi_local.protocol.mcp_device import (
    DeviceTool,
    PropertyType,
    ToolProperty,
    ToolResult,
    ToolValue,
)

__all__ = ["THEMES", "DeviceState", "builtin_device_tools", "padding_tool"]

THEMES = ("light", "dark")


@dataclass(slots=True)
class DeviceState:
    """What the simulated device's tools read and change."""

    volume: int = 70
    brightness: int = 80
    theme: str = "light"
    battery_level: int = 90
    charging: bool = False
    ssid: str = "xiaozhi-lab"
    board_name: str = "bread-compact-wifi"
    firmware_version: str = "2.0.3"
    mac_address: str = "a0:85:e3:f4:49:34"
    reboot_requested: bool = False

    def status(self) -> dict[str, Any]:
        """The ``self.get_device_status`` JSON (§4.5 example shape)."""
        return {
            "audio_speaker": {"volume": self.volume},
            "screen": {"brightness": self.brightness, "theme": self.theme},
            "battery": {"level": self.battery_level, "charging": self.charging},
            "network": {"type": "wifi", "ssid": self.ssid, "signal": "strong"},
        }

    def system_info(self) -> dict[str, Any]:
        """A small subset of the §1.3 system-info JSON."""
        return {
            "version": 2,
            "mac_address": self.mac_address,
            "application": {"name": "xiaozhi", "version": self.firmware_version},
            "board": {"type": self.board_name, "name": self.board_name},
        }


def padding_tool(index: int, description_bytes: int = 700) -> DeviceTool:
    """A board-specific-looking tool whose description is ``description_bytes`` long.

    Used to push the tool list past one 8000-byte page (§4.3). Returns its own index.
    """
    head = f"Padding tool {index} used to exercise tools/list pagination. "
    filler = "x" * max(0, description_bytes - len(head))

    def handler(_args: Mapping[str, ToolValue]) -> ToolResult:
        return index

    return DeviceTool(
        name=f"self.padding.tool_{index:03d}",
        description=head + filler,
        handler=handler,
        properties=(ToolProperty("level", PropertyType.INTEGER, default=0, minimum=0, maximum=9),),
    )


def builtin_device_tools(
    state: DeviceState,
    *,
    padding_tools: int = 0,
    padding_description_bytes: int = 700,
) -> list[DeviceTool]:
    """The §4.5 built-ins bound to ``state``, plus ``padding_tools`` padding tools."""

    def get_status(_args: Mapping[str, ToolValue]) -> ToolResult:
        return state.status()

    def set_volume(args: Mapping[str, ToolValue]) -> ToolResult:
        state.volume = int(args["volume"])
        return True

    def set_brightness(args: Mapping[str, ToolValue]) -> ToolResult:
        state.brightness = int(args["brightness"])
        return True

    def set_theme(args: Mapping[str, ToolValue]) -> ToolResult:
        theme = str(args["theme"])
        if theme not in THEMES:
            return False  # the firmware answers false for an unknown theme
        state.theme = theme
        return True

    def get_system_info(_args: Mapping[str, ToolValue]) -> ToolResult:
        return state.system_info()

    def reboot(_args: Mapping[str, ToolValue]) -> ToolResult:
        state.reboot_requested = True
        return True

    tools = [
        DeviceTool(
            "self.get_device_status",
            "Report the device's current state (speaker volume, screen, battery, network). "
            "Call it before changing a setting whose current value is unknown.",
            get_status,
        ),
        DeviceTool(
            "self.audio_speaker.set_volume",
            "Set the speaker volume (0-100). Read the current volume with "
            "`self.get_device_status` first if you need it.",
            set_volume,
            (ToolProperty("volume", PropertyType.INTEGER, minimum=0, maximum=100),),
        ),
        DeviceTool(
            "self.screen.set_brightness",
            "Set the screen backlight brightness (0-100).",
            set_brightness,
            (ToolProperty("brightness", PropertyType.INTEGER, minimum=0, maximum=100),),
        ),
        DeviceTool(
            "self.screen.set_theme",
            "Switch the screen theme; `theme` is `light` or `dark`.",
            set_theme,
            (ToolProperty("theme", PropertyType.STRING),),
        ),
    ]
    tools.extend(padding_tool(i, padding_description_bytes) for i in range(padding_tools))
    tools.append(
        DeviceTool(
            "self.get_system_info",
            "Return the device's system information JSON.",
            get_system_info,
            user_only=True,
        )
    )
    tools.append(DeviceTool("self.reboot", "Restart the device.", reboot, user_only=True))
    return tools
