"""HTTP hardening over real sockets: stalled bodies, stalled headers, malformed requests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from tests.helpers.firmware import MAC
from xiaozhi_local.config import LimitsSettings, ServerSettings
from xiaozhi_local.server.context import ServerContext
from xiaozhi_local.server.http_api import HttpServer, OpenGate, build_http_app, start_http


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    ctx = ServerContext(ServerSettings(), limits=LimitsSettings(body_timeout_s=0.3, idle_http_s=0.5))
    srv = await start_http(ctx, build_http_app(ctx, OpenGate()), "127.0.0.1", 0)
    yield srv
    await srv.close()


async def exchange(server: HttpServer, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


async def test_a_body_that_never_arrives_gets_408(server: HttpServer) -> None:
    reply = await exchange(server, b"POST /xiaozhi/ota/ HTTP/1.1\r\nHost: x\r\nDevice-Id: " + MAC.encode()
                           + b"\r\nContent-Length: 500\r\n\r\n{\"appl")
    assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive" in reply


async def test_headers_that_never_end_are_cut_off(server: HttpServer) -> None:
    reply = await exchange(server, b"POST /xiaozhi/ota/ HTTP/1.1\r\nHost: x\r\nDevice-Id: ")
    assert reply == b""  # the server closed the idle connection


async def test_malformed_requests_are_400_and_one_quiet_log_line(server: HttpServer,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    bad = b"POST /xiaozhi/ota/ HTTP/1.1\r\nHost: x\r\nDevice-Id: a\x00b\r\nContent-Length: 0\r\n\r\n"
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert (await exchange(server, bad)).split(b" ")[1] == b"400"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    lines = [r.getMessage() for r in caplog.records if "malformed HTTP request" in r.getMessage()]
    assert len(lines) == 1 and "127.0.0.1" in lines[0]
