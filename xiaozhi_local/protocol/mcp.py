"""The server as MCP **client** of the device, as a pure state machine (protocol.md §4).

:class:`McpClient` makes JSON-RPC request payloads (to wrap with ``build_mcp``) and matches
the device's replies by id. It never does I/O and never raises on device junk: every reply
becomes a :data:`ResponseEvent`, and :class:`McpIgnored` says why a payload was not used.
Timeouts belong to the caller, who can :meth:`McpClient.cancel` a request.

Ids are integers from a dedicated range (10000 … 2**31-1, §4.7, §8 item 9): the device reads
ids with cJSON ``valueint`` (int32), and low ids collide with other clients' fixed ones.

The simulator side (:class:`McpDeviceServer`, :func:`builtin_device_tools`) lives in
:mod:`.mcp_device` / :mod:`.mcp_builtin` and is re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from xiaozhi_local import __version__
from xiaozhi_local.errors import McpToolError
from xiaozhi_local.protocol.mcp_builtin import (
    DeviceState,
    builtin_device_tools,
    padding_tool,
)
from xiaozhi_local.protocol.mcp_device import (
    MCP_PROTOCOL_VERSION,
    TOOLS_PAGE_BYTES,
    DeviceTool,
    McpDeviceServer,
    PropertyType,
    ToolProperty,
)
from xiaozhi_local.protocol.mcp_pager import Tool, ToolsListPager

__all__ = [
    "CLIENT_NAME",
    "ID_MAX",
    "ID_MIN",
    "MCP_PROTOCOL_VERSION",
    "TOOLS_PAGE_BYTES",
    "DeviceState",
    "DeviceTool",
    "McpClient",
    "McpDeviceServer",
    "McpIgnored",
    "McpMethod",
    "McpResult",
    "McpRpcError",
    "PropertyType",
    "ResponseEvent",
    "Tool",
    "ToolProperty",
    "ToolsListPager",
    "builtin_device_tools",
    "padding_tool",
    "tool_call_text",
]

CLIENT_NAME: Final = "xiaozhi-local"
ID_MIN: Final = 10000
ID_MAX: Final = 2**31 - 1


class McpMethod(StrEnum):
    """The methods we send (§4.2-§4.4)."""

    INITIALIZE = "initialize"
    INITIALIZED = "notifications/initialized"
    TOOLS_LIST = "tools/list"
    TOOLS_CALL = "tools/call"


@dataclass(frozen=True, slots=True)
class McpResult:
    """A ``result`` reply to our request ``id`` (``method`` is what we had asked)."""

    id: int
    method: str
    result: Any


@dataclass(frozen=True, slots=True)
class McpRpcError:
    """An ``error`` reply (device errors have a ``message`` and no ``code``, §4.1), or a reply
    to a pending id that was unusable (``message`` says how)."""

    id: int
    method: str
    message: str
    code: int | None = None


@dataclass(frozen=True, slots=True)
class McpIgnored:
    """A payload that answers none of our requests; ``reason`` is for the log."""

    reason: str
    id: int | None = None


ResponseEvent = McpResult | McpRpcError | McpIgnored


def _describe(value: object) -> str:
    """A short, cheap description of a junk value for a log line."""
    if isinstance(value, str):
        return repr(value[:60])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)
        return text if len(text) <= 20 else text[:20] + "..."
    return type(value).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class McpClient:
    """Produces request payloads, consumes response payloads; no I/O, no clock."""

    def __init__(
        self,
        *,
        client_version: str = __version__,
        id_min: int = ID_MIN,
        id_max: int = ID_MAX,
    ) -> None:
        if not 0 <= id_min <= id_max <= ID_MAX:
            raise ValueError("need 0 <= id_min <= id_max <= 2**31-1")
        self.client_version = client_version
        self.id_min = id_min
        self.id_max = id_max
        self._next = id_min
        self._pending: dict[int, str] = {}

    @property
    def pending(self) -> Mapping[int, str]:
        """Outstanding request ids and their methods (read-only view)."""
        return dict(self._pending)

    def cancel(self, request_id: int) -> bool:
        """Forget a request (e.g. the caller's timeout fired); a late reply is then ignored."""
        return self._pending.pop(request_id, None) is not None

    def _allocate(self, method: str) -> int:
        span = self.id_max - self.id_min + 1
        for _ in range(span):
            candidate = self._next
            self._next = self.id_min if candidate >= self.id_max else candidate + 1
            if candidate not in self._pending:
                self._pending[candidate] = method
                return candidate
        raise RuntimeError("every MCP request id in the range is pending")

    def _request(self, method: McpMethod, params: dict[str, Any]) -> dict[str, Any]:
        request_id = self._allocate(str(method))
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": str(method),
            "params": params,
        }

    def initialize_request(self, vision_url: str | None = None, vision_token: str | None = None) -> dict[str, Any]:
        """``initialize`` (§4.2), with ``capabilities.vision`` only when ``vision_url`` is given.

        The vision URL must be http(s) (the device POSTs the photo to it, §4.6).
        """
        capabilities: dict[str, Any] = {}
        if vision_url is not None:
            if urlsplit(vision_url).scheme not in ("http", "https"):
                raise ValueError(f"vision_url must be http(s), got {vision_url!r}")
            vision: dict[str, Any] = {"url": vision_url}
            if vision_token is not None:
                vision["token"] = vision_token
            capabilities["vision"] = vision
        return self._request(
            McpMethod.INITIALIZE,
            {
                "protocolVersion": MCP_PROTOCOL_VERSION,
                "capabilities": capabilities,
                "clientInfo": {"name": CLIENT_NAME, "version": self.client_version},
            },
        )

    @staticmethod
    def initialized_notification() -> dict[str, Any]:
        """``notifications/initialized``: no id, no reply expected."""
        return {"jsonrpc": "2.0", "method": str(McpMethod.INITIALIZED)}

    def tools_list_request(self, cursor: str | None = None, *, with_user_tools: bool = False) -> dict[str, Any]:
        """``tools/list`` (§4.3); ``cursor`` only when given (the previous ``nextCursor``)."""
        params: dict[str, Any] = {"withUserTools": with_user_tools}
        if cursor is not None:
            params["cursor"] = cursor
        return self._request(McpMethod.TOOLS_LIST, params)

    def tools_call_request(self, name: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``tools/call`` (§4.4) with the tool's **original** (dotted) name."""
        if not isinstance(name, str) or not name:
            raise ValueError("tool name must be a non-empty str")
        return self._request(McpMethod.TOOLS_CALL, {"name": name, "arguments": dict(arguments or {})})

    def handle_response(self, payload: object) -> ResponseEvent:
        """Match one device payload to a pending request. Never raises."""
        if not isinstance(payload, Mapping):
            return McpIgnored("payload is not a JSON object")
        raw_id = payload.get("id")
        the_id = raw_id if _is_int(raw_id) else None
        if "method" in payload:
            method = payload.get("method")
            kind = "request" if "id" in payload else "notification"
            return McpIgnored(f"device {kind} {_describe(method)} ignored", the_id)
        if payload.get("jsonrpc") != "2.0":
            return McpIgnored("jsonrpc is not '2.0'", the_id)
        if the_id is None:
            return McpIgnored(f"reply id {_describe(raw_id)} is not an integer")
        method = self._pending.pop(the_id, None)
        if method is None:
            return McpIgnored(f"reply to unknown id {the_id}", the_id)
        if "error" in payload:
            error = payload["error"]
            message = error.get("message") if isinstance(error, Mapping) else None
            if not isinstance(message, str):
                return McpRpcError(the_id, method, "malformed error object in reply")
            code = error.get("code")
            return McpRpcError(the_id, method, message, code if _is_int(code) else None)
        if "result" in payload:
            return McpResult(the_id, method, payload["result"])
        return McpRpcError(the_id, method, "reply has neither result nor error")


def tool_call_text(response: ResponseEvent | Mapping[str, Any]) -> str:
    """The text of a ``tools/call`` reply, or :class:`McpToolError` (§4.4, §4.7).

    Accepts the event from :meth:`McpClient.handle_response` or a bare ``result`` object.
    Text parts are joined with newlines; non-text parts (images) are skipped. A JSON-RPC
    error, ``isError: true`` or an unreadable result raises :class:`McpToolError`. An
    :class:`McpIgnored` event answers no request, so it raises :class:`ValueError` (the
    call is still pending).
    """
    if isinstance(response, McpIgnored):
        raise ValueError(f"not a tools/call reply: {response.reason}")
    if isinstance(response, McpRpcError):
        raise McpToolError(response.message)
    result = response.result if isinstance(response, McpResult) else response
    if not isinstance(result, Mapping):
        raise McpToolError("malformed tools/call result: not an object")
    content = result.get("content")
    if not isinstance(content, list):
        raise McpToolError("malformed tools/call result: no content list")
    texts = [
        part["text"]
        for part in content
        if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str)
    ]
    text = "\n".join(texts)
    if result.get("isError") is True:
        raise McpToolError(text or "the tool reported an error")
    return text
