"""Our MCP client wired to the simulated device MCP server (protocol.md §4.1-§4.5, §8 item 9)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from xiaozhi_local.errors import McpToolError
from xiaozhi_local.protocol.mcp import (
    ID_MIN,
    TOOLS_PAGE_BYTES,
    DeviceState,
    DeviceTool,
    McpClient,
    McpDeviceServer,
    McpIgnored,
    McpResult,
    McpRpcError,
    PropertyType,
    ResponseEvent,
    Tool,
    ToolProperty,
    ToolsListPager,
    builtin_device_tools,
    tool_call_text,
)
from xiaozhi_local.protocol.messages import Mcp, build_mcp, parse_client_message, to_json

MODEL_TOOLS = [
    "self.get_device_status",
    "self.audio_speaker.set_volume",
    "self.screen.set_brightness",
    "self.screen.set_theme",
]
USER_TOOLS = ["self.get_system_info", "self.reboot"]


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _wire(obj: Any) -> Any:
    """What crossing the WebSocket does to a payload: JSON text and back."""
    return json.loads(json.dumps(obj, ensure_ascii=False))


def exchange(client: McpClient, device: McpDeviceServer, request: dict[str, Any]) -> ResponseEvent:
    """Send ``request`` through the real envelope both ways; return the client's event."""
    incoming = _wire(build_mcp(request, "sid"))
    reply = device.handle_request(incoming["payload"])
    assert reply is not None, f"device dropped {request}"
    envelope = parse_client_message(to_json(Mcp(reply, "sid")))
    assert isinstance(envelope, Mcp)
    return client.handle_response(envelope.payload)


def make_device(padding: int = 0) -> tuple[McpDeviceServer, DeviceState]:
    state = DeviceState()
    device = McpDeviceServer(tools=builtin_device_tools(state, padding_tools=padding))
    return device, state


def list_all(
    client: McpClient, device: McpDeviceServer, *, with_user_tools: bool = False
) -> tuple[ToolsListPager, list[dict[str, Any]]]:
    pager = ToolsListPager()
    requests: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        request = client.tools_list_request(cursor, with_user_tools=with_user_tools)
        requests.append(request)
        event = exchange(client, device, request)
        assert isinstance(event, McpResult), event
        # The firmware bounds {"tools":[...]} by 8000 - 30 slack (+1 for the closing "]}"
        # replacing the last comma); the nextCursor tail may go a few bytes past 8000.
        tools_only = {"tools": event.result["tools"]}
        assert len(_compact(tools_only)) <= TOOLS_PAGE_BYTES - 30 + 1
        cursor = pager.feed(event.result)
        if cursor is None:
            return pager, requests


# --- initialize ----------------------------------------------------------------------------


def test_initialize_with_vision_then_initialized() -> None:
    client, (device, _) = McpClient(client_version="9.9"), make_device()
    request = client.initialize_request("http://192.168.1.10:8003/mcp/vision/explain", "tok")
    assert request["id"] == ID_MIN == 10000
    assert request["params"] == {
        "protocolVersion": "2024-11-05",
        "capabilities": {"vision": {"url": "http://192.168.1.10:8003/mcp/vision/explain", "token": "tok"}},
        "clientInfo": {"name": "xiaozhi-local", "version": "9.9"},
    }
    event = exchange(client, device, request)
    assert event == McpResult(
        10000,
        "initialize",
        {
            "protocolVersion": "2024-11-05",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bread-compact-wifi", "version": "2.0.3"},
        },
    )
    assert device.vision_url == "http://192.168.1.10:8003/mcp/vision/explain"
    assert device.vision_token == "tok"
    note = client.initialized_notification()
    assert note == {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert device.handle_request(_wire(note)) is None
    assert device.methods_seen == ["initialize", "notifications/initialized"]
    assert client.pending == {}


def test_initialize_without_vision_has_empty_capabilities() -> None:
    client = McpClient()
    assert client.initialize_request()["params"]["capabilities"] == {}
    with pytest.raises(ValueError, match="http"):
        client.initialize_request("ws://host/vision")


# --- tools/list ------------------------------------------------------------------------------


def test_small_tool_list_is_one_page_without_user_tools() -> None:
    client, (device, _) = McpClient(), make_device()
    pager, requests = list_all(client, device)
    assert requests[0]["params"] == {"withUserTools": False}
    assert pager.complete and pager.pages == 1
    assert [t.name for t in pager.tools] == MODEL_TOOLS
    volume = pager.tools[1]
    assert volume.input_schema == {
        "type": "object",
        "properties": {"volume": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["volume"],
    }
    assert pager.tools[0].input_schema == {"type": "object", "properties": {}}


def test_paginated_tools_list_over_8000_bytes() -> None:
    client, (device, _) = McpClient(), make_device(padding=24)
    total = sum(len(json.dumps(t.to_dict(), ensure_ascii=False).encode()) for t in device.tools)
    assert total > 2 * TOOLS_PAGE_BYTES
    pager, requests = list_all(client, device)
    assert pager.complete
    assert pager.pages == len(requests) >= 3
    padding = [f"self.padding.tool_{i:03d}" for i in range(24)]
    assert [t.name for t in pager.tools] == MODEL_TOOLS + padding
    assert not any(t.user_only for t in pager.tools)
    # Each follow-up asks from the first tool the previous page left out.
    assert "cursor" not in requests[0]["params"]
    names = [t.name for t in pager.tools]
    seen = 0
    for req in requests[1:]:
        cursor = req["params"]["cursor"]
        assert cursor in names[seen + 1 :]
        seen = names.index(cursor)
    assert [r["id"] for r in requests] == list(range(10000, 10000 + len(requests)))


def test_with_user_tools_lists_and_flags_them() -> None:
    client, (device, _) = McpClient(), make_device(padding=12)
    pager, requests = list_all(client, device, with_user_tools=True)
    assert requests[0]["params"] == {"withUserTools": True}
    names = [t.name for t in pager.tools]
    assert names[-2:] == USER_TOOLS
    assert [t.name for t in pager.tools if t.user_only] == USER_TOOLS


def test_tools_list_firmware_errors() -> None:
    client, (device, _) = McpClient(), make_device()
    event = exchange(client, device, client.tools_list_request("self.no_such_tool"))
    assert event == McpRpcError(10000, "tools/list", "Failed to add tool  because of payload size limit")
    big = builtin_device_tools(DeviceState(), padding_tools=1, padding_description_bytes=9000)[4]
    lone = McpDeviceServer(tools=[big])
    event = exchange(client, lone, client.tools_list_request())
    assert isinstance(event, McpRpcError)
    assert event.message == f"Failed to add tool {big.name} because of payload size limit"
    empty = McpDeviceServer()
    assert exchange(client, empty, client.tools_list_request()) == McpResult(10002, "tools/list", {"tools": []})


# --- tools/call ------------------------------------------------------------------------------


def call(client: McpClient, device: McpDeviceServer, name: str, args: Any = None) -> str:
    return tool_call_text(exchange(client, device, client.tools_call_request(name, args)))


def test_tools_call_success_changes_device_state() -> None:
    client, (device, state) = McpClient(), make_device()
    assert call(client, device, "self.audio_speaker.set_volume", {"volume": 35}) == "true"
    assert state.volume == 35
    status = json.loads(call(client, device, "self.get_device_status"))
    assert status["audio_speaker"] == {"volume": 35}
    assert call(client, device, "self.screen.set_theme", {"theme": "dark"}) == "true"
    assert call(client, device, "self.screen.set_theme", {"theme": "blue"}) == "false"
    assert state.theme == "dark"
    assert call(client, device, "self.audio_speaker.set_volume", {"volume": 55.9}) == "true"
    assert state.volume == 55  # cJSON valueint truncates


def test_user_only_tools_are_callable_and_defaults_apply() -> None:
    client, (device, state) = McpClient(), make_device(padding=2)
    assert call(client, device, "self.reboot") == "true"
    assert state.reboot_requested
    info = json.loads(call(client, device, "self.get_system_info"))
    assert info["mac_address"] == state.mac_address
    assert call(client, device, "self.padding.tool_001") == "1"  # "level" has a default
    assert call(client, device, "self.padding.tool_001", {"level": "x"}) == "1"


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("self.nope", {}, "Unknown tool: self.nope"),
        ("self.audio_speaker.set_volume", {}, "Missing valid argument: volume"),
        ("self.audio_speaker.set_volume", None, "Missing valid argument: volume"),
        ("self.audio_speaker.set_volume", {"volume": "50"}, "Missing valid argument: volume"),
        ("self.audio_speaker.set_volume", {"volume": True}, "Missing valid argument: volume"),
        (
            "self.audio_speaker.set_volume",
            {"volume": 150},
            "Property 'volume': value 150 exceeds maximum 100",
        ),
        (
            "self.screen.set_brightness",
            {"brightness": -1},
            "Property 'brightness': value -1 is below minimum 0",
        ),
        ("self.screen.set_theme", {"theme": 1}, "Missing valid argument: theme"),
        ("self.padding.tool_000", {"level": 10}, "Property 'level': value 10 exceeds maximum 9"),
    ],
)
def test_tools_call_errors(name: str, args: Any, message: str) -> None:
    client, (device, state) = McpClient(), make_device(padding=1)
    request = client.tools_call_request(name, args)
    reply = device.handle_request(_wire(request))
    assert reply is not None and reply["error"] == {"message": message}  # no "code"
    event = client.handle_response(_wire(reply))
    assert event == McpRpcError(10000, "tools/call", message)
    with pytest.raises(McpToolError) as info:
        tool_call_text(event)
    assert info.value.message == message
    assert state.volume == 70


def test_handler_exception_becomes_error() -> None:
    def boom(_args: Any) -> bool:
        raise RuntimeError("Failed to capture photo")

    device = McpDeviceServer(tools=[DeviceTool("self.camera.take_photo", "d", boom)])
    client = McpClient()
    event = exchange(client, device, client.tools_call_request("self.camera.take_photo", {}))
    assert event == McpRpcError(10000, "tools/call", "Failed to capture photo")


# --- device server strictness ------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"id": 1, "method": "initialize"},
        {"jsonrpc": "1.0", "id": 1, "method": "initialize"},
        {"jsonrpc": 2.0, "id": 1, "method": "initialize"},
        {"jsonrpc": "2.0", "id": "1", "method": "initialize"},
        {"jsonrpc": "2.0", "method": "initialize"},
        {"jsonrpc": "2.0", "id": True, "method": "initialize"},
        {"jsonrpc": "2.0", "id": None, "method": "initialize"},
        {"jsonrpc": "2.0", "id": 1, "method": 5},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": None},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": []},
        {"jsonrpc": "2.0", "id": 1, "method": "notifications/cancelled"},
        [1, 2],
        "initialize",
        None,
    ],
)
def test_device_drops_what_the_firmware_drops(payload: Any) -> None:
    device, _ = make_device()
    assert device.handle_request(payload) is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (None, "Missing params"),
        ({"arguments": {}}, "Missing name"),
        ({"name": 5}, "Missing name"),
        ({"name": "self.reboot", "arguments": [1]}, "Invalid arguments"),
        ({"name": "self.reboot", "arguments": None}, "Invalid arguments"),
    ],
)
def test_device_tools_call_envelope_errors(params: Any, message: str) -> None:
    device, _ = make_device()
    payload: dict[str, Any] = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
    if params is not None:
        payload["params"] = params
    assert device.handle_request(payload) == {"jsonrpc": "2.0", "id": 7, "error": {"message": message}}


def test_device_other_methods_and_numeric_ids() -> None:
    device, _ = make_device()
    reply = device.handle_request({"jsonrpc": "2.0", "id": 3, "method": "ping"})
    assert reply == {"jsonrpc": "2.0", "id": 3, "error": {"message": "Method not implemented: ping"}}
    reply = device.handle_request({"jsonrpc": "2.0", "id": 10000.7, "method": "initialize"})
    assert reply is not None and reply["id"] == 10000
    reply = device.handle_request({"jsonrpc": "2.0", "id": 2**40, "method": "initialize"})
    assert reply is not None and reply["id"] == 2**31 - 1


def test_duplicate_tool_names_are_ignored() -> None:
    device, _ = make_device()
    assert device.add_tool(device.tools[0]) is False
    assert len(device.tools) == 6


def test_tool_property_validation() -> None:
    with pytest.raises(ValueError, match="range"):
        ToolProperty("s", PropertyType.STRING, minimum=0)
    with pytest.raises(ValueError, match="range"):
        ToolProperty("n", PropertyType.INTEGER, default=200, minimum=0, maximum=100)
    with pytest.raises(ValueError, match="type"):
        ToolProperty("n", PropertyType.INTEGER, default=True)
    with pytest.raises(ValueError, match="type"):
        ToolProperty("b", PropertyType.BOOLEAN, default="yes")
    prop = ToolProperty("on", PropertyType.BOOLEAN, default=False)
    assert prop.to_schema() == {"type": "boolean", "default": False}
    assert prop.has_default


# --- client ids and junk -----------------------------------------------------------------------


def test_ids_wrap_and_skip_pending() -> None:
    client = McpClient(id_min=10000, id_max=10002)
    ids = [client.tools_call_request("t")["id"] for _ in range(3)]
    assert ids == [10000, 10001, 10002]
    with pytest.raises(RuntimeError):
        client.tools_call_request("t")
    assert client.handle_response({"jsonrpc": "2.0", "id": 10001, "result": {}}) == McpResult(10001, "tools/call", {})
    assert client.tools_call_request("t")["id"] == 10001  # wrapped, 10000/10002 still pending
    assert client.cancel(10000) is True
    assert client.cancel(10000) is False
    assert client.tools_call_request("t")["id"] == 10000


def test_default_id_range_is_int32() -> None:
    client = McpClient()
    assert client.id_min == 10000 and client.id_max == 2**31 - 1
    with pytest.raises(ValueError, match="id_min"):
        McpClient(id_min=5, id_max=2**31)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([1], "not a JSON object"),
        ("x", "not a JSON object"),
        (None, "not a JSON object"),
        ({"jsonrpc": "2.0", "method": "notifications/state_changed", "params": {}}, "notification"),
        ({"jsonrpc": "2.0", "id": 10000, "method": "tools/list"}, "request"),
        ({"id": 10000, "result": {}}, "jsonrpc"),
        ({"jsonrpc": "2.0", "id": "10000", "result": {}}, "not an integer"),
        ({"jsonrpc": "2.0", "id": True, "result": {}}, "not an integer"),
        ({"jsonrpc": "2.0", "result": {}}, "not an integer"),
        ({"jsonrpc": "2.0", "id": 99, "result": {}}, "unknown id 99"),
        ({"jsonrpc": "2.0", "id": [[1] * 1000], "result": {}}, "reply id list is not"),
        ({"jsonrpc": "2.0", "method": {"a": [1] * 1000}}, "notification dict ignored"),
    ],
)
def test_junk_is_ignored_with_a_reason(payload: Any, reason: str) -> None:
    client = McpClient()
    request = client.initialize_request()
    event = client.handle_response(payload)
    assert isinstance(event, McpIgnored)
    assert reason in event.reason
    assert request["id"] in client.pending  # still waiting


def test_late_reply_after_cancel_is_ignored() -> None:
    client = McpClient()
    rid = client.tools_call_request("self.reboot")["id"]
    client.cancel(rid)
    event = client.handle_response({"jsonrpc": "2.0", "id": rid, "result": {}})
    assert event == McpIgnored(f"reply to unknown id {rid}", rid)


@pytest.mark.parametrize(
    ("reply", "expected_message", "code"),
    [
        ({"error": {"message": "boom"}}, "boom", None),
        ({"error": {"message": "x", "code": -32601}}, "x", -32601),
        ({"error": {"code": 1}}, "malformed error object in reply", None),
        ({"error": "boom"}, "malformed error object in reply", None),
        ({}, "reply has neither result nor error", None),
    ],
)
def test_pending_id_with_error_shapes(reply: dict[str, Any], expected_message: str, code: int | None) -> None:
    client = McpClient()
    rid = client.tools_list_request()["id"]
    event = client.handle_response({"jsonrpc": "2.0", "id": rid, **reply})
    assert event == McpRpcError(rid, "tools/list", expected_message, code)
    assert client.pending == {}


# --- pager and tool result helpers -------------------------------------------------------------


def test_pager_guards() -> None:
    pager = ToolsListPager()
    assert pager.feed({"tools": [{"name": "a"}], "nextCursor": "b"}) == "b"
    assert pager.feed({"tools": [{"name": "b"}], "nextCursor": "b"}) is None
    assert pager.done and not pager.complete and "repeated" in (pager.stop_reason or "")
    assert [t.name for t in pager.tools] == ["a", "b"]

    capped = ToolsListPager(max_pages=50)
    for i in range(49):
        assert capped.feed({"tools": [], "nextCursor": f"c{i}"}) == f"c{i}"
    assert capped.feed({"tools": [], "nextCursor": "c49"}) is None
    assert capped.pages == 50 and "50 pages" in (capped.stop_reason or "")
    assert capped.feed({"tools": []}) is None and capped.pages == 50

    junk: list[Any] = [None, [], {"tools": "x"}, {"tools": [], "nextCursor": 5}]
    for page in junk:
        p = ToolsListPager()
        assert p.feed(page) is None
        assert p.stop_reason is not None


def test_pager_skips_malformed_and_duplicate_tools() -> None:
    pager = ToolsListPager(max_tools=3)
    entries = [
        {"name": "a", "description": "A", "annotations": {"audience": ["user"]}},
        {"name": "a"},
        {"description": "no name"},
        "junk",
        {"name": "b", "description": 5},
        {"name": "c", "inputSchema": []},
        {"name": "d", "annotations": {"audience": ["user", "assistant"]}},
    ]
    assert pager.feed({"tools": entries, "nextCursor": ""}) is None
    assert pager.complete
    assert pager.tools == [
        Tool("a", "A", {"type": "object", "properties": {}}, True),
        Tool("d", "", {"type": "object", "properties": {}}, False),
    ]
    assert len(pager.skipped) == 5
    over = ToolsListPager(max_tools=1)
    assert over.feed({"tools": [{"name": "x"}, {"name": "y"}], "nextCursor": "z"}) is None
    assert [t.name for t in over.tools] == ["x"] and "more than 1 tools" in (over.stop_reason or "")


def test_tool_call_text_variants() -> None:
    two = {
        "content": [
            {"type": "text", "text": "a"},
            {"type": "image", "image": "{}"},
            {"type": "text", "text": "b"},
        ],
        "isError": False,
    }
    assert tool_call_text(two) == "a\nb"
    assert tool_call_text(McpResult(1, "tools/call", two)) == "a\nb"
    with pytest.raises(McpToolError, match="camera busy"):
        tool_call_text({"content": [{"type": "text", "text": "camera busy"}], "isError": True})
    with pytest.raises(McpToolError, match="reported an error"):
        tool_call_text({"content": [], "isError": True})
    bad: Any
    for bad in ("x", {"content": "x"}, {}):
        with pytest.raises(McpToolError, match="malformed"):
            tool_call_text(bad)
    with pytest.raises(ValueError, match="unknown id"):
        tool_call_text(McpIgnored("reply to unknown id 5", 5))
