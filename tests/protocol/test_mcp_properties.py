"""Property tests: MCP code never raises on junk and always paginates within 8000 bytes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from xiaozhi_local.protocol.mcp import (
    TOOLS_PAGE_BYTES,
    DeviceState,
    McpClient,
    McpDeviceServer,
    McpIgnored,
    McpResult,
    McpRpcError,
    ToolsListPager,
    builtin_device_tools,
)

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)
_RPC_KEYS = st.sampled_from(["jsonrpc", "id", "method", "params", "result", "error", "name", "arguments", "cursor"])
_RPC = st.dictionaries(
    _RPC_KEYS, _JSON | st.sampled_from(["2.0", 10000, 10001, "tools/call", "initialize"]), max_size=6
)


_SLACK = 30


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@settings(max_examples=200, deadline=None)
@given(st.one_of(_JSON, _RPC))
def test_client_never_raises_on_device_junk(payload: Any) -> None:
    client = McpClient()
    client.initialize_request()
    client.tools_list_request()
    event = client.handle_response(payload)
    assert isinstance(event, (McpResult, McpRpcError, McpIgnored))
    if isinstance(event, McpIgnored):
        assert event.reason
        assert len(client.pending) == 2
    else:
        assert event.id in (10000, 10001) and len(client.pending) == 1


@settings(max_examples=200, deadline=None)
@given(
    payload=st.one_of(_JSON, _RPC),
    name=st.sampled_from(["self.audio_speaker.set_volume", "self.screen.set_theme", "self.reboot", "x"]),
    arguments=_JSON,
)
def test_device_never_raises_and_answers_like_the_firmware(payload: Any, name: str, arguments: Any) -> None:
    device = McpDeviceServer(tools=builtin_device_tools(DeviceState()))
    for request in (
        payload,
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}},
    ):
        reply = device.handle_request(request)
        if reply is None:
            continue
        assert reply["jsonrpc"] == "2.0" and isinstance(reply["id"], int)
        assert ("result" in reply) != ("error" in reply)
        if "error" in reply:
            assert list(reply["error"]) == ["message"]
        json.dumps(reply)


@settings(max_examples=60, deadline=None)
@given(
    padding=st.integers(min_value=0, max_value=40),
    desc=st.integers(min_value=0, max_value=2500),
    with_user=st.booleans(),
)
def test_pagination_covers_every_tool_once_within_the_page_limit(padding: int, desc: int, with_user: bool) -> None:
    tools = builtin_device_tools(DeviceState(), padding_tools=padding, padding_description_bytes=desc)
    device = McpDeviceServer(tools=tools)
    client, pager = McpClient(), ToolsListPager()
    cursor: str | None = None
    while True:
        reply = device.handle_request(client.tools_list_request(cursor, with_user_tools=with_user))
        event = client.handle_response(reply)
        assert isinstance(event, McpResult)
        page = event.result
        # Firmware rule: a tool joins the page only while used + len(tool) + 1 + 30 <= 8000,
        # where used = len('{"tools":[') + each added tool's JSON and comma.
        used = len(_compact({"tools": page["tools"]})) - 1
        assert used + _SLACK <= TOOLS_PAGE_BYTES
        if "nextCursor" in page:  # the page is full: the next tool would not have fitted
            nxt = next(t for t in tools if t.name == page["nextCursor"])
            assert used + len(_compact(nxt.to_dict())) + 1 + _SLACK > TOOLS_PAGE_BYTES
        cursor = pager.feed(page)
        if cursor is None:
            break
    assert pager.complete
    expected = [t.name for t in tools if with_user or not t.user_only]
    assert [t.name for t in pager.tools] == expected
