"""The session's MCP client of the device (protocol.md §4, §8 item 9).

After a hello with ``features.mcp``: ``initialize``, ``notifications/initialized``, then
``tools/list`` page by page with the cursor; the tools are cached for the session.
``call()`` runs ``tools/call`` with a timeout; device errors become :class:`McpToolError`
with the device's message. Request ids come from our own range (10000+), never 1/2.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..errors import McpToolError
from ..pipeline.conversation import ToolInfo
from ..protocol.mcp import McpClient, McpIgnored, McpResult, McpRpcError, ResponseEvent, tool_call_text
from ..protocol.mcp_pager import ToolsListPager
from ..protocol.outgoing import build_mcp, to_json

log = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]


class DeviceMcp:
    def __init__(self, send_text: SendText, session_id: str, *, request_timeout: float = 10.0):
        self._send_text = send_text
        self._session_id = session_id
        self._client = McpClient()
        self._waiting: dict[int, asyncio.Future[ResponseEvent]] = {}
        self.request_timeout = request_timeout
        self._tools: list[ToolInfo] = []
        self.ready = asyncio.Event()
        self.server_info: dict[str, Any] = {}

    @property
    def tools(self) -> Sequence[ToolInfo]:
        return tuple(self._tools)

    async def _request(self, payload: dict[str, Any], timeout: float) -> ResponseEvent:
        request_id = payload["id"]
        future: asyncio.Future[ResponseEvent] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            await self._send_text(to_json(build_mcp(payload, self._session_id)))
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._client.cancel(request_id)
            raise
        finally:
            self._waiting.pop(request_id, None)

    def on_payload(self, payload: dict[str, Any]) -> None:
        """Route one ``mcp`` payload from the device to the request it answers."""
        event = self._client.handle_response(payload)
        if isinstance(event, McpIgnored):
            log.info("session %s: mcp payload ignored: %s", self._session_id, event.reason)
            return
        future = self._waiting.get(event.id)
        if future is not None and not future.done():
            future.set_result(event)

    async def discover(self) -> None:
        """``initialize`` then the paginated ``tools/list``; failures are logged, not raised."""
        try:
            reply = await self._request(self._client.initialize_request(), self.request_timeout)
            if isinstance(reply, McpResult) and isinstance(reply.result, dict):
                info = reply.result.get("serverInfo")
                self.server_info = info if isinstance(info, dict) else {}
            elif isinstance(reply, McpRpcError):
                log.warning("session %s: mcp initialize failed: %s", self._session_id, reply.message)
                return
            await self._send_text(to_json(build_mcp(McpClient.initialized_notification(), self._session_id)))
            pager = ToolsListPager()
            cursor: str | None = None
            while True:
                page = await self._request(self._client.tools_list_request(cursor), self.request_timeout)
                if isinstance(page, McpRpcError):
                    log.warning("session %s: mcp tools/list failed: %s", self._session_id, page.message)
                    break
                assert isinstance(page, McpResult)
                cursor = pager.feed(page.result)
                if cursor is None:
                    break
            if pager.stop_reason:
                log.warning("session %s: mcp tools/list stopped: %s", self._session_id, pager.stop_reason)
            self._tools = [ToolInfo(t.name, t.description, t.input_schema) for t in pager.tools if not t.user_only]
            log.info("session %s: device offers %d mcp tools in %d page(s)", self._session_id,
                     len(self._tools), pager.pages)
        except TimeoutError:
            log.warning("session %s: the device did not answer mcp within %.0f s", self._session_id,
                        self.request_timeout)
        finally:
            self.ready.set()

    async def call(self, name: str, arguments: dict[str, Any], timeout: float = 30.0) -> str:
        """Run one device tool; its text, or McpToolError (device error or timeout)."""
        try:
            reply = await self._request(self._client.tools_call_request(name, arguments), timeout)
        except TimeoutError:
            raise McpToolError(f"the device did not answer {name} within {timeout:.0f} s") from None
        return tool_call_text(reply)

    def close(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
