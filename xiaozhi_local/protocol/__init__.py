"""Pure Xiaozhi device-protocol code: no sockets, threads, asyncio or clocks.

Modules (section numbers refer to /work/shared/protocol.md):

* :mod:`.framing` - binary audio frames v1/v2/v3 (§2.3).
* :mod:`.messages` - typed device → server JSON messages (§2.2, §2.5), re-exporting the
  server → device builders of :mod:`.outgoing` (§2.6) and :mod:`.audio_params` (§2.2).
* :mod:`.ota` - OTA check-version / activation requests and replies (§1, §8 items 1-3).
* :mod:`.mcp` - the server as MCP client of the device (§4), re-exporting the simulated
  device MCP server of :mod:`.mcp_device` / :mod:`.mcp_builtin` and the tools/list pager of
  :mod:`.mcp_pager`.
"""

from __future__ import annotations
