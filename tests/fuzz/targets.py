"""Fuzz targets: feed one hostile input to one parser and check its contract.

Each ``check_*`` function returns normally when the parser behaved (a result of the right type,
or only the typed error it documents) and raises :class:`ContractBroken` (or lets an unexpected
exception through) otherwise. The hypothesis tests in this directory and ``bench/fuzz.py``
(100,000+ cases, mutation-based) share them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from xiaozhi_local.audio.opus import OpusDecoder
from xiaozhi_local.errors import ActivationBodyError, AudioError, McpToolError, ProtocolError
from xiaozhi_local.protocol.client_messages import ClientMessage
from xiaozhi_local.protocol.framing import AudioFrame, decode_frame, encode_frame
from xiaozhi_local.protocol.mcp import McpClient, McpIgnored, McpResult, McpRpcError, tool_call_text
from xiaozhi_local.protocol.mcp_pager import ToolsListPager
from xiaozhi_local.protocol.messages import parse_client_message
from xiaozhi_local.protocol.ota import ActivateRequest, OtaRequest, parse_activate_body, parse_ota_request
from xiaozhi_local.server.pairing_rules import normalize_client_id, normalize_device_id
from xiaozhi_local.server.ws import bearer_token

CLOSE_CODES = {1002, 1003, 1007, 1008, 1009}


class ContractBroken(AssertionError):
    """A parser returned something it promises not to, or raised an untyped error."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise ContractBroken(what)


def check_frame(version: int, data: bytes) -> None:
    """§2.3 binary frames: an AudioFrame or a ProtocolError with a close code; never anything else."""
    try:
        frame = decode_frame(version, data)
    except ProtocolError as exc:
        expect(exc.close_code in CLOSE_CODES, f"frame: close code {exc.close_code}")
        return
    expect(isinstance(frame, AudioFrame), "frame: not an AudioFrame")
    expect(len(frame.payload) <= len(data), "frame: payload longer than the frame")
    if version in (2, 3):  # what decodes re-encodes to the same bytes (timestamps aside)
        again = decode_frame(version, encode_frame(version, frame.payload, frame.timestamp_ms))
        expect(again.payload == frame.payload, "frame: re-encoding changed the payload")


def check_message(text: str | bytes, max_bytes: int = 32768) -> None:
    """§2.5 device JSON: a typed message or a ProtocolError with a close code."""
    try:
        message = parse_client_message(text, max_bytes)
    except ProtocolError as exc:
        expect(exc.close_code in CLOSE_CODES, f"message: close code {exc.close_code}")
        expect(len(exc.reason.encode()) <= 400, "message: close reason too long")
        return
    expect(isinstance(message, ClientMessage), f"message: {type(message).__name__}")


def check_ota(headers: Mapping[str, str], body: bytes | None, content_type: str | None) -> None:
    """§1.3 OTA request: never raises; ids are stripped strings or None."""
    req = parse_ota_request(headers, body, content_type)
    expect(isinstance(req, OtaRequest), "ota: not an OtaRequest")
    for value in (req.device_id, req.client_id, req.activation_version, req.user_agent, req.app_version):
        expect(value is None or (isinstance(value, str) and value == value.strip() and value != ""),
               f"ota: field {value!r}")
    expect(isinstance(req.body, dict), "ota: body not a dict")
    if req.device_id is not None:
        key = normalize_device_id(req.device_id)
        expect(isinstance(key, str) and key == normalize_device_id(key), "ota: device id normalisation")
    expect(normalize_client_id(req.client_id) == normalize_client_id(normalize_client_id(req.client_id)),
           "ota: client id normalisation")


def check_activate(body: bytes) -> None:
    """§1.6 activate body: an ActivateRequest or ActivationBodyError (HTTP 400)."""
    try:
        req = parse_activate_body(body)
    except ActivationBodyError as exc:
        expect(exc.http_status == 400 and bool(str(exc)), "activate: error without status or text")
        return
    expect(isinstance(req, ActivateRequest), "activate: not an ActivateRequest")
    if req.is_v2:
        expect(req.hmac is not None and len(req.hmac) == 64, "activate: v2 without a 64-hex hmac")


def check_bearer(value: str) -> None:
    """§2.1 ``Authorization``: a stripped token or None, never an exception."""
    token = bearer_token(value)
    expect(token is None or (isinstance(token, str) and token == token.strip()), f"bearer: {token!r}")


def check_mcp(payload: Any) -> None:
    """§4 device MCP replies: the client classifies anything; the pager and tools/call text
    reader raise only their typed errors."""
    client = McpClient()
    client.initialize_request()
    client.tools_list_request()
    event = client.handle_response(payload)
    expect(isinstance(event, McpResult | McpRpcError | McpIgnored), "mcp: unknown event")
    pager = ToolsListPager()
    cursor = pager.feed(payload.get("result") if isinstance(payload, dict) else payload)
    expect(cursor is None or isinstance(cursor, str), "mcp: cursor not a string")
    if not isinstance(event, McpIgnored):
        try:
            text = tool_call_text(event)
        except McpToolError:
            return
        expect(isinstance(text, str), "mcp: tool text not a string")


_DECODERS: dict[int, OpusDecoder] = {}


def check_opus(packet: bytes) -> None:
    """Uplink audio: PCM or AudioError, even for garbage (libopus is native code)."""
    decoder = _DECODERS.setdefault(16000, OpusDecoder(sample_rate=16000))
    try:
        pcm = decoder.decode(packet)
    except AudioError:
        return
    expect(pcm.ndim == 1 and pcm.size <= 16000 * 120 // 1000, f"opus: {pcm.shape}")


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
