"""The OTA / activation / health HTTP API over real sockets on 127.0.0.1 (protocol.md §1, §8 1-3)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.helpers.firmware import FIRMWARE_BODY, MAC, UUID
from tests.helpers.firmware import FIRMWARE_HEADERS as V1_HEADERS
from xiaozhi_local.config import ServerSettings
from xiaozhi_local.protocol.ota import ActivateRequest, Activation, OtaRequest
from xiaozhi_local.server.context import ServerContext
from xiaozhi_local.server.http_api import (
    DeviceGate,
    HttpServer,
    OpenGate,
    OtaDecision,
    build_http_app,
    local_tz_offset_min,
    start_http,
)

# A board with an efuse serial number (Activation-Version 2, §1.3).
FIRMWARE_HEADERS = {**V1_HEADERS, "Activation-Version": "2", "Serial-Number": "SN" + "0" * 30}

V2_ACTIVATE = {"algorithm": "hmac-sha256", "serial_number": "SN" + "0" * 30, "challenge": MAC, "hmac": "ab" * 32}

Start = Callable[..., Awaitable[HttpServer]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers: list[HttpServer] = []

    async def _start(gate: DeviceGate | None = None, **settings: Any) -> HttpServer:
        settings.setdefault("max_body_bytes", 4096)
        ctx = ServerContext(ServerSettings(**settings))
        # These tests are about HTTP itself: admission is the gate's business (test_pairing*.py).
        server = await start_http(ctx, build_http_app(ctx, gate or OpenGate()), "127.0.0.1", 0)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def raw(server: HttpServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send exact bytes (no client-added headers); return status, headers, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- check-version --------------------------------------------------------------------------


async def test_firmware_request_gets_full_websocket_reply(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start()
    before = int(time.time() * 1000)
    async with http.post(f"{server.base_url}/xiaozhi/ota/", json=FIRMWARE_BODY, headers=FIRMWARE_HEADERS) as r:
        assert r.status == 200
        assert r.content_type == "application/json"
        reply = await r.json()
    assert set(reply) == {"server_time", "firmware", "websocket"}  # exactly one transport, no mqtt
    assert reply["firmware"] == {"version": "2.0.3", "url": "", "force": 0}
    ts = reply["server_time"]["timestamp"]
    assert isinstance(ts, int) and before <= ts <= int(time.time() * 1000)  # milliseconds
    assert reply["server_time"]["timezone_offset"] == local_tz_offset_min()
    ws = reply["websocket"]
    assert ws == {"url": "ws://127.0.0.1:8000/xiaozhi/v1/", "token": ""}  # the Host the client used
    assert "version" not in ws


async def test_no_trailing_slash_and_settings(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start(advertise_host="xiaozhi-box.test", protocol_version=3, timezone_offset_min=480,
                         ws_port=8123)
    async with http.post(f"{server.base_url}/xiaozhi/ota", json=FIRMWARE_BODY, headers=FIRMWARE_HEADERS) as r:
        assert r.status == 200
        reply = await r.json()
    assert reply["websocket"] == {"url": "ws://xiaozhi-box.test:8123/xiaozhi/v1/", "token": "", "version": 3}
    assert reply["server_time"]["timezone_offset"] == 480


async def test_py_xiaozhi_small_body(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start()
    body = {"application": {"version": "1.0.0", "elf_sha256": "b" * 64},
            "board": {"type": "desktop", "name": "py-xiaozhi", "ip": "127.0.0.1", "mac": MAC}}
    headers = {"Device-Id": MAC, "Client-Id": UUID, "Activation-Version": "1.4.0"}
    async with http.post(f"{server.base_url}/xiaozhi/ota/", json=body, headers=headers) as r:
        assert r.status == 200
        reply = await r.json()
    assert reply["firmware"]["version"] == "1.0.0"
    assert "websocket" in reply and "mqtt" not in reply


@pytest.mark.parametrize(
    ("body", "content_type", "version"),
    [
        (b"", "application/json", "0.0.0"),
        (b"", None, "0.0.0"),
        (b"this is not json {", "application/json", "0.0.0"),
        (b"[1, 2, 3]", "application/json", "0.0.0"),
        (b"\xff\xfe\x00garbage", "application/octet-stream", "0.0.0"),
        (json.dumps(FIRMWARE_BODY).encode(), "text/plain", "2.0.3"),
        (json.dumps(FIRMWARE_BODY).encode(), None, "2.0.3"),
    ],
)
async def test_odd_bodies_still_get_200(start: Start, body: bytes, content_type: str | None, version: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    server = await start()
    headers = {"Device-Id": MAC} | ({"Content-Type": content_type} if content_type else {})
    with caplog.at_level(logging.INFO, logger="xiaozhi_local.server.http_api"):
        status, resp_headers, data = await raw(server, post("/xiaozhi/ota/", body, headers))
    assert status == 200
    assert resp_headers["content-type"].startswith("application/json")
    reply = json.loads(data)
    assert reply["firmware"]["version"] == version
    assert reply["websocket"]["url"] == "ws://127.0.0.1:8000/xiaozhi/v1/"
    odd = [r for r in caplog.records if r.getMessage().startswith("OTA request from 127.0.0.1")]
    assert len(odd) == 1  # one line saying what was odd


async def test_user_agent_version_used_when_body_lacks_it(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start()
    async with http.post(f"{server.base_url}/xiaozhi/ota/", data=b"{}",
                         headers={"Device-Id": MAC, "User-Agent": "esp-box-3/1.9.4"}) as r:
        assert (await r.json())["firmware"]["version"] == "1.9.4"


async def test_mac_in_body_is_enough(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start()
    async with http.post(f"{server.base_url}/xiaozhi/ota/", json={"mac_address": MAC}) as r:
        assert r.status == 200


async def test_no_device_id_is_400_json(start: Start, http: aiohttp.ClientSession,
                                        caplog: pytest.LogCaptureFixture) -> None:
    server = await start()
    with caplog.at_level(logging.WARNING, logger="xiaozhi_local.server.http_api"):
        async with http.post(f"{server.base_url}/xiaozhi/ota/", json={"application": {"version": "1.0"}}) as r:
            assert r.status == 400
            error = (await r.json())["error"]
    assert "Device-Id" in error and "mac_address" in error
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 1 and "127.0.0.1" in rejected[0].getMessage()


@pytest.mark.parametrize("device_id", ["x" * 65, "bad\x7fid", "caf\u00e9"])
async def test_bad_device_id_is_400(start: Start, device_id: str) -> None:
    server = await start()
    body = json.dumps({"mac_address": device_id}).encode()
    status, _, data = await raw(server, post("/xiaozhi/ota/", body, {"Content-Type": "application/json"}))
    assert status == 400 and "Device-Id" in json.loads(data)["error"]


async def test_printable_non_mac_id_is_accepted(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start()
    async with http.post(f"{server.base_url}/xiaozhi/ota/", json={}, headers={"Device-Id": "web-test-page 01"}) as r:
        assert r.status == 200


async def test_huge_body_with_content_length_is_413(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start()
    async with http.post(f"{server.base_url}/xiaozhi/ota/", data=b"x" * 1_000_000, headers={"Device-Id": MAC}) as r:
        assert r.status == 413
        assert "4096" in (await r.json())["error"]
    async with http.get(f"{server.base_url}/health") as r:  # still serving
        assert r.status == 200


async def test_huge_chunked_body_is_413(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"{" * 16384

    async with http.post(f"{server.base_url}/xiaozhi/ota/", data=chunks(), headers={"Device-Id": MAC}) as r:
        assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert r.status == 413
        assert "error" in await r.json()


async def test_body_just_under_limit_is_fine(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start()
    body = json.dumps({"mac_address": MAC, "pad": "x" * 4000}).encode()
    assert len(body) <= 4096
    async with http.post(f"{server.base_url}/xiaozhi/ota/", data=body) as r:
        assert r.status == 200


async def test_get_ota_is_human_text(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start(advertise_host="xiaozhi-box.test")
    async with http.get(f"{server.base_url}/xiaozhi/ota/") as r:
        assert r.status == 200
        assert r.content_type == "text/plain"
        text = await r.text()
    assert "OTA" in text and "http://xiaozhi-box.test:8003/xiaozhi/ota/" in text


# --- activation ------------------------------------------------------------------------------


class PairingGate:
    """Pending until admit(); meanwhile every OTA reply carries an activation block."""

    def __init__(self) -> None:
        self.admitted: set[str] = set()
        self.activate_calls: list[tuple[str, ActivateRequest, str]] = []

    async def on_ota(self, req: OtaRequest, address: str) -> OtaDecision:
        assert req.device_id is not None
        if req.device_id in self.admitted:
            return OtaDecision(token="tok-1")
        return OtaDecision(token="tok-1", activation=Activation(code="123456", challenge=req.device_id,
                                                                message="pair me\n123456"))

    async def on_activate(self, req: OtaRequest, body: ActivateRequest, address: str) -> bool:
        assert req.device_id is not None
        self.activate_calls.append((req.device_id, body, address))
        return req.device_id in self.admitted


@pytest.mark.parametrize("path", ["/xiaozhi/ota/activate", "/xiaozhi/ota/activate/"])
@pytest.mark.parametrize("body", [b"{}", json.dumps(V2_ACTIVATE).encode(),
                                  json.dumps({"Payload": V2_ACTIVATE}).encode()])
async def test_activate_open_gate_is_200(start: Start, http: aiohttp.ClientSession, path: str, body: bytes) -> None:
    server = await start()
    async with http.post(server.base_url + path, data=body, headers=FIRMWARE_HEADERS) as r:
        assert r.status == 200


async def test_pairing_flow(start: Start, http: aiohttp.ClientSession) -> None:
    gate = PairingGate()
    server = await start(gate)
    ota = f"{server.base_url}/xiaozhi/ota/"
    async with http.post(ota, json=FIRMWARE_BODY, headers=FIRMWARE_HEADERS) as r:
        reply = await r.json()
    assert reply["activation"] == {"code": "123456", "challenge": MAC, "message": "pair me\n123456",
                                   "timeout_ms": 30000}
    assert reply["websocket"]["token"] == "tok-1"  # websocket still present (§1.7)
    assert "mqtt" not in reply

    async with http.post(ota + "activate", json=V2_ACTIVATE, headers=FIRMWARE_HEADERS) as r:
        assert r.status == 202
    device_id, body, address = gate.activate_calls[-1]
    assert (device_id, body.hmac, body.challenge, address) == (MAC, "ab" * 32, MAC, "127.0.0.1")

    gate.admitted.add(MAC)
    async with http.post(ota + "activate", data=b"{}", headers=FIRMWARE_HEADERS) as r:
        assert r.status == 200
    async with http.post(ota, json=FIRMWARE_BODY, headers=FIRMWARE_HEADERS) as r:
        assert "activation" not in await r.json()


@pytest.mark.parametrize("body", [b"not json", b"[1]", json.dumps({"algorithm": "hmac-sha256"}).encode(),
                                  json.dumps(V2_ACTIVATE | {"hmac": "zz"}).encode()])
async def test_bad_activate_body_is_400_json(start: Start, http: aiohttp.ClientSession, body: bytes) -> None:
    server = await start()
    async with http.post(f"{server.base_url}/xiaozhi/ota/activate", data=body, headers=FIRMWARE_HEADERS) as r:
        assert r.status == 400
        assert (await r.json())["error"].startswith("activate")


async def test_activate_without_device_id_is_400(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start()
    async with http.post(f"{server.base_url}/xiaozhi/ota/activate", data=b"{}") as r:
        assert r.status == 400 and "Device-Id" in (await r.json())["error"]


# --- robustness ------------------------------------------------------------------------------


async def test_unknown_path_is_404_json(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start()
    async with http.get(f"{server.base_url}/nope") as r:
        assert r.status == 404
        assert "/xiaozhi/ota/" in (await r.json())["error"]


@pytest.mark.parametrize(("method", "path"), [("PUT", "/xiaozhi/ota/"), ("GET", "/xiaozhi/ota/activate"),
                                              ("POST", "/health")])
async def test_wrong_method_is_405_json(start: Start, http: aiohttp.ClientSession, method: str, path: str) -> None:
    server = await start()
    async with http.request(method, server.base_url + path) as r:
        assert r.status == 405
        assert "Allow" in r.headers
        assert method in (await r.json())["error"]


class BrokenGate:
    async def on_ota(self, req: OtaRequest, address: str) -> OtaDecision:
        raise RuntimeError("secret internals /etc/passwd")

    async def on_activate(self, req: OtaRequest, body: ActivateRequest, address: str) -> bool:
        raise KeyError("boom")


async def test_handler_exception_is_500_without_traceback(start: Start, http: aiohttp.ClientSession,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    server = await start(BrokenGate())
    with caplog.at_level(logging.INFO):
        async with http.post(f"{server.base_url}/xiaozhi/ota/", json=FIRMWARE_BODY, headers=FIRMWARE_HEADERS) as r:
            assert r.status == 500
            text = await r.text()
    assert json.loads(text) == {"error": "internal error"}
    assert "Traceback" not in text and "secret" not in text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    async with http.post(f"{server.base_url}/xiaozhi/ota/activate", data=b"{}", headers=FIRMWARE_HEADERS) as r:
        assert r.status == 500
    async with http.get(f"{server.base_url}/health") as r:  # keeps answering
        assert r.status == 200


async def test_health(start: Start, http: aiohttp.ClientSession) -> None:
    server = await start(advertise_host="xiaozhi-box.test")
    async with http.get(f"{server.base_url}/health") as r:
        assert r.status == 200
        health = await r.json()
    assert health["status"] == "ok"
    assert {"version", "uptime_s", "conversation", "models", "sessions"} <= set(health)
    assert health["sessions"] == []
    assert health["ota_url"] == "http://xiaozhi-box.test:8003/xiaozhi/ota/"
    assert health["websocket_url"] == "ws://xiaozhi-box.test:8000/xiaozhi/v1/"


async def test_port_in_use_is_a_clear_error(start: Start) -> None:
    from xiaozhi_local.errors import XiaozhiError

    server = await start()
    ctx = ServerContext(ServerSettings())
    with pytest.raises(XiaozhiError, match="http_port"):
        await start_http(ctx, build_http_app(ctx, OpenGate()), "127.0.0.1", server.port)


async def test_client_vanishing_mid_body_is_not_an_error(start: Start, http: aiohttp.ClientSession,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    server = await start()
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /xiaozhi/ota/ HTTP/1.1\r\nHost: 127.0.0.1\r\nDevice-Id: " + MAC.encode()
                 + b"\r\nContent-Length: 1000\r\n\r\n{\"application\":")
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await asyncio.sleep(0.2)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    async with http.get(f"{server.base_url}/health") as r:
        assert r.status == 200
