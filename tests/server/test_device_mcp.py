"""The session's MCP client against the simulated device MCP server (our pure firmware model)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from xiaozhi_local.errors import McpToolError
from xiaozhi_local.protocol.mcp import DeviceState, McpDeviceServer, builtin_device_tools
from xiaozhi_local.server.device_mcp import DeviceMcp


def wire(padding: int = 12, silent: bool = False) -> tuple[DeviceMcp, DeviceState, list[dict[str, Any]]]:
    state = DeviceState()
    tools = builtin_device_tools(state, padding_tools=padding)
    device = McpDeviceServer(name="test-board", version="2.0.0", tools=tools)
    seen: list[dict[str, Any]] = []
    mcp: DeviceMcp

    async def send(text: str) -> None:
        envelope = json.loads(text)
        assert envelope["type"] == "mcp"
        seen.append(envelope["payload"])
        if silent:
            return
        reply = device.handle_request(envelope["payload"])
        if reply is not None:
            asyncio.get_running_loop().call_soon(mcp.on_payload, reply)

    mcp = DeviceMcp(send, "s1", request_timeout=0.5)
    return mcp, state, seen


async def test_discovery_pages_through_tools_with_ids_from_our_range() -> None:
    mcp, _, seen = wire()
    await mcp.discover()
    names = [t.name for t in mcp.tools]
    assert "self.audio_speaker.set_volume" in names and len(names) >= 16
    assert "self.reboot" not in names  # user-only tools are not for the model
    methods = [p.get("method") for p in seen]
    assert methods[0] == "initialize" and methods[1] == "notifications/initialized"
    pages = [p for p in seen if p.get("method") == "tools/list"]
    assert len(pages) >= 2 and "cursor" in pages[1]["params"]
    assert all(p["id"] >= 10000 for p in seen if "id" in p)
    assert mcp.server_info.get("name") == "test-board"


async def test_tool_call_and_device_errors() -> None:
    mcp, state, _ = wire(padding=0)
    await mcp.discover()
    assert await mcp.call("self.audio_speaker.set_volume", {"volume": 35}) == "true"
    assert state.volume == 35
    with pytest.raises(McpToolError, match="Unknown tool"):
        await mcp.call("self.nope", {})
    with pytest.raises(McpToolError, match="Missing valid argument: volume"):
        await mcp.call("self.audio_speaker.set_volume", {})


async def test_silent_device_times_out_cleanly() -> None:
    mcp, _, _ = wire(silent=True)
    await mcp.discover()  # logs and gives up; never raises
    assert mcp.ready.is_set() and mcp.tools == ()
    with pytest.raises(McpToolError, match="did not answer"):
        await mcp.call("self.get_device_status", {}, timeout=0.2)
