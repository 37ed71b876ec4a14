"""Hostile traffic at the real server over loopback (a few hundred cases; ``bench/fuzz.py`` runs
100,000+): mutated OTA/activate requests as raw bytes and mutated WebSocket sessions. Nothing may
answer 5xx or close with 1011, no case may hang, and a paired device's live session keeps working."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.fuzz.mutate import Mutator
from tests.helpers.firmware import FIRMWARE_BODY, FIRMWARE_HEADERS, MAC
from xiaozhi_local.config import ServerSettings
from xiaozhi_local.pipeline.echo import EchoConversation
from xiaozhi_local.server.app import XiaozhiServer
from xiaozhi_local.server.context import ServerContext

HTTP_CASES = 250
WS_CASES = 60
ALLOWED_CLOSES = {1000, 1002, 1003, 1007, 1008, 1009, 1013}


async def raw_http(port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()
        return int(status_line.split()[1]) if status_line else 0
    finally:
        writer.close()


@pytest.fixture
async def live() -> AsyncIterator[tuple[XiaozhiServer, str]]:
    settings = ServerSettings(host="127.0.0.1", http_port=0, ws_port=0, mdns=False, hello_timeout_s=2)
    server = XiaozhiServer(ServerContext(settings, conversation="echo"), EchoConversation)
    await server.start()
    ota = f"http://127.0.0.1:{server.http_port}/xiaozhi/ota/"
    async with aiohttp.ClientSession() as http:
        async with http.post(ota, json=FIRMWARE_BODY, headers=FIRMWARE_HEADERS) as r:
            code = (await r.json())["activation"]["code"]
        await server.pairing.approve(code)
        async with http.post(ota, json=FIRMWARE_BODY, headers=FIRMWARE_HEADERS) as r:
            token = (await r.json())["websocket"]["token"]
    yield server, token
    await server.stop()


async def turn(ws: ClientConnection, text: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "listen", "state": "detect", "text": text}))
    async with asyncio.timeout(10):
        while True:
            raw = await ws.recv()
            if isinstance(raw, str) and json.loads(raw).get("type") == "stt":
                return dict(json.loads(raw))


async def fuzz_ws_case(url: str, mutator: Mutator, headers: dict[str, str]) -> int | None:
    """One hostile session; returns the server's close code (None: we closed first)."""
    version = mutator.rng.choice((1, 2, 3))
    try:
        async with connect(url, additional_headers=headers | {"Protocol-Version": str(version)},
                           max_size=None, open_timeout=5) as ws:
            if mutator.rng.random() < 0.8:
                await ws.send(json.dumps({"type": "hello", "version": version, "transport": "websocket"}))
            for _ in range(mutator.rng.randrange(1, 12)):
                if mutator.rng.random() < 0.5:
                    await ws.send(mutator.message())
                else:
                    await ws.send(mutator.frame(version))
            await ws.send(json.dumps({"type": "ping"}))
            try:
                async with asyncio.timeout(3):
                    while True:
                        await ws.recv()
            except TimeoutError:
                return None
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except InvalidHandshake:  # a header the upgrade refuses: fine
        return None
    return None


async def test_hostile_traffic_never_crashes_and_a_live_session_keeps_working(
        live: tuple[XiaozhiServer, str], caplog: pytest.LogCaptureFixture) -> None:
    server, token = live
    rng = random.Random(20260501)
    mutator = Mutator(rng)
    ws_url = f"ws://127.0.0.1:{server.ws_port}/xiaozhi/v1/"
    good = {"Device-Id": MAC, "Authorization": f"Bearer {token}"}
    statuses: dict[int, int] = {}
    closes: dict[int | None, int] = {}
    with caplog.at_level(logging.WARNING):
        async with connect(ws_url, additional_headers=good) as keeper:
            await keeper.send(json.dumps({"type": "hello", "version": 1, "transport": "websocket"}))
            await keeper.recv()
            for i in range(HTTP_CASES):
                path = rng.choice(("/xiaozhi/ota/", "/xiaozhi/ota/activate", "/xiaozhi/ota", "/health"))
                body = mutator.ota_body() if "activate" not in path else mutator.activate_body()
                async with asyncio.timeout(10):
                    status = await raw_http(server.http_port, rng.choice(("POST", "POST", "GET", "PUT")), path,
                                            mutator.headers(), body)
                statuses[status] = statuses.get(status, 0) + 1
                assert status < 500 or status == 0, f"HTTP case {i}: {status}"
            for i in range(WS_CASES):
                headers = good if rng.random() < 0.6 else {k: v for k, v in mutator.headers().items()
                                                            if v.isascii() and v.isprintable()}
                async with asyncio.timeout(20):
                    code = await fuzz_ws_case(ws_url, mutator, headers)
                closes[code] = closes.get(code, 0) + 1
                assert code is None or code in ALLOWED_CLOSES, f"WS case {i}: close {code}"
                if i % 10 == 0:  # the paired device's session is unaffected throughout
                    assert (await turn(keeper, f"still here {i}"))["text"] == f"still here {i}"
            assert (await turn(keeper, "the end"))["text"] == "the end"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "an internal error was logged"
    assert statuses.get(200, 0) > 0 and sum(statuses.values()) == HTTP_CASES
    assert sum(closes.values()) == WS_CASES
