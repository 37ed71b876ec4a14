"""The device's MCP server, as a pure class for the simulator (protocol.md §4.1-§4.5).

:class:`McpDeviceServer` answers JSON-RPC payloads the way the firmware's ``McpServer``
does, including its quirks:

* Requests need ``"jsonrpc":"2.0"`` and a string ``method``; ``notifications*`` methods are
  accepted silently; ``params`` (if present, even ``null``) must be an object; the ``id``
  must be a JSON number (a string or missing id is dropped). Dropped → ``None``.
* Number handling follows cJSON's ``valueint``: fractions truncate toward zero and values
  saturate at the int32 range, for both ids and integer arguments.
* ``tools/list`` pages are "about" 8000 bytes: a tool is added only while
  ``len(page) + len(tool_json) + 1 + 30 <= 8000``, so ``{"tools":[…]}`` stays within 7971
  bytes, but the closing ``,"nextCursor":"<name>"`` may exceed the 30-byte slack and push
  the whole page a few bytes past 8000, exactly as on the device. ``nextCursor`` names the
  first tool left out; a cursor that names no tool, or a page that fits nothing, is an
  error ``"Failed to add tool <name> because of payload size limit"``.
* ``tools/call`` type-checks each declared property in order: wrong type or missing → the
  default if there is one, else ``"Missing valid argument: <name>"``; integers outside
  ``minimum``/``maximum`` → ``"Property '<name>': value N exceeds maximum M"`` (or ``is below
  minimum``). User-only tools are callable whether or not they were listed.
* Errors carry only ``message``, never ``code``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from xiaozhi_local.protocol.mcp_tools import (
    DeviceTool,
    PropertyType,
    ToolHandler,
    ToolProperty,
    ToolResult,
    ToolValue,
    c_valueint,
    compact_json,
    is_json_number,
    stringify_result,
)

__all__ = [
    "MCP_PROTOCOL_VERSION",
    "TOOLS_PAGE_BYTES",
    "DeviceTool",
    "McpDeviceServer",
    "PropertyType",
    "ToolHandler",
    "ToolProperty",
    "ToolResult",
    "ToolValue",
]

MCP_PROTOCOL_VERSION: Final = "2024-11-05"
TOOLS_PAGE_BYTES: Final = 8000
_PAGE_SLACK: Final = 30


class McpDeviceServer:
    """Pure firmware-like MCP server: feed it request payloads, get reply payloads back."""

    def __init__(
        self,
        *,
        name: str = "bread-compact-wifi",
        version: str = "2.0.3",
        tools: Iterable[DeviceTool] = (),
    ) -> None:
        self.name = name
        self.version = version
        self.tools: list[DeviceTool] = []
        self.vision_url: str | None = None
        self.vision_token: str | None = None
        self.methods_seen: list[str] = []
        """Every accepted method, notifications included, in arrival order."""
        for tool in tools:
            self.add_tool(tool)

    def add_tool(self, tool: DeviceTool) -> bool:
        """Register ``tool``; a duplicate name is ignored (False), as on the firmware."""
        if any(t.name == tool.name for t in self.tools):
            return False
        self.tools.append(tool)
        return True

    def handle_request(self, payload: object) -> dict[str, Any] | None:
        """Answer one JSON-RPC payload, or None when the firmware would stay silent."""
        if not isinstance(payload, Mapping):
            return None
        if payload.get("jsonrpc") != "2.0":
            return None
        method = payload.get("method")
        if not isinstance(method, str):
            return None
        if method.startswith("notifications"):
            self.methods_seen.append(method)
            return None
        params = payload.get("params")
        if "params" in payload and not isinstance(params, Mapping):
            return None
        raw_id = payload.get("id")
        if not is_json_number(raw_id):
            return None
        request_id = c_valueint(raw_id)  # type: ignore[arg-type]
        self.methods_seen.append(method)
        if method == "initialize":
            return self._result(request_id, self._initialize(params))
        if method == "tools/list":
            return self._tools_list(request_id, params)
        if method == "tools/call":
            return self._tools_call(request_id, params)
        return self._error(request_id, f"Method not implemented: {method}")

    @staticmethod
    def _result(request_id: int, result: object) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    @staticmethod
    def _error(request_id: int, message: str) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": request_id, "error": {"message": message}}

    def _initialize(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        caps = params.get("capabilities") if params is not None else None
        vision = caps.get("vision") if isinstance(caps, Mapping) else None
        if isinstance(vision, Mapping) and isinstance(vision.get("url"), str):
            self.vision_url = vision["url"]
            token = vision.get("token")
            self.vision_token = token if isinstance(token, str) else ""
        return {
            "protocolVersion": MCP_PROTOCOL_VERSION,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": self.name, "version": self.version},
        }

    def _tools_list(self, request_id: int, params: Mapping[str, Any] | None) -> dict[str, Any]:
        cursor = ""
        with_user = False
        if params is not None:
            if isinstance(params.get("cursor"), str):
                cursor = params["cursor"]
            if isinstance(params.get("withUserTools"), bool):
                with_user = params["withUserTools"]
        page: list[dict[str, Any]] = []
        used = len('{"tools":[')
        next_cursor = ""
        found = cursor == ""
        for tool in self.tools:
            if not found:
                if tool.name != cursor:
                    continue
                found = True
            if tool.user_only and not with_user:
                continue
            entry = tool.to_dict()
            size = len(compact_json(entry).encode("utf-8")) + 1  # the trailing comma
            if used + size + _PAGE_SLACK > TOOLS_PAGE_BYTES:
                next_cursor = tool.name
                break
            page.append(entry)
            used += size
        if not page and self.tools:
            return self._error(
                request_id,
                f"Failed to add tool {next_cursor} because of payload size limit",
            )
        result: dict[str, Any] = {"tools": page}
        if next_cursor:
            result["nextCursor"] = next_cursor
        return self._result(request_id, result)

    def _tools_call(self, request_id: int, params: Mapping[str, Any] | None) -> dict[str, Any]:
        if params is None:
            return self._error(request_id, "Missing params")
        name = params.get("name")
        if not isinstance(name, str):
            return self._error(request_id, "Missing name")
        arguments = params.get("arguments")
        if "arguments" in params and not isinstance(arguments, Mapping):
            return self._error(request_id, "Invalid arguments")
        tool = next((t for t in self.tools if t.name == name), None)
        if tool is None:
            return self._error(request_id, f"Unknown tool: {name}")
        values: dict[str, ToolValue] = {}
        for prop in tool.properties:
            given = arguments.get(prop.name) if arguments is not None else None
            try:
                value = prop.accept(given)
            except ValueError as exc:
                return self._error(request_id, str(exc))
            if value is None:
                if prop.default is None:
                    return self._error(request_id, f"Missing valid argument: {prop.name}")
                value = prop.default
            values[prop.name] = value
        try:
            text = stringify_result(tool.handler(values))
        except Exception as exc:
            return self._error(request_id, str(exc) or type(exc).__name__)
        return self._result(request_id, {"content": [{"type": "text", "text": text}], "isError": False})
