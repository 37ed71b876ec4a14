"""Pairing end to end over real loopback sockets: OTA → code → /activate 202 → owner approves →
200 → token → WebSocket. Then wrong tokens, revocation of live sessions, re-pairing, open mode.
The registry is a real SQLite file; code expiry uses an injected clock."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers.firmware import FIRMWARE_BODY, FIRMWARE_HEADERS, MAC, UUID
from xiaozhi_local.config import LimitsSettings, PairingSettings, ServerSettings
from xiaozhi_local.pipeline.echo import EchoConversation
from xiaozhi_local.server.app import XiaozhiServer
from xiaozhi_local.server.context import ServerContext
from xiaozhi_local.server.pairing import DevicePairing
from xiaozhi_local.store.devices import DeviceRegistry, RegistryError

OTHER_MAC = "a0:85:e3:00:00:02"
HELLO = {"type": "hello", "version": 1, "transport": "websocket", "features": {"mcp": False}}


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class Box:
    """A running server plus what a test needs to drive it."""

    def __init__(self, server: XiaozhiServer, http: aiohttp.ClientSession, clock: FakeClock, db: Path):
        self.server, self.http, self.clock, self.db = server, http, clock, db
        self.ota_url = f"http://127.0.0.1:{server.http_port}/xiaozhi/ota/"
        self.ws_url = f"ws://127.0.0.1:{server.ws_port}/xiaozhi/v1/"

    async def ota(self, mac: str = MAC, client_id: str = UUID, expect: int = 200) -> dict[str, Any]:
        headers = {**FIRMWARE_HEADERS, "Device-Id": mac, "Client-Id": client_id}
        async with self.http.post(self.ota_url, json=FIRMWARE_BODY, headers=headers) as r:
            assert r.status == expect, await r.text()
            return dict(await r.json()) | {"_headers": dict(r.headers)}

    async def activate(self, mac: str = MAC, client_id: str = UUID, body: bytes = b"{}") -> int:
        headers = {**FIRMWARE_HEADERS, "Device-Id": mac, "Client-Id": client_id}
        async with self.http.post(self.ota_url + "activate", data=body, headers=headers) as r:
            return r.status

    async def pair(self, mac: str = MAC, client_id: str = UUID) -> str:
        """The whole firmware flow with the owner approving; returns the device's token."""
        reply = await self.ota(mac, client_id)
        code = reply["activation"]["code"]
        assert await self.activate(mac, client_id) == 202
        await self.server.pairing.approve(code)
        assert await self.activate(mac, client_id) == 200
        reply = await self.ota(mac, client_id)
        assert "activation" not in reply
        return str(reply["websocket"]["token"])

    def headers(self, token: str | None, mac: str = MAC) -> dict[str, str]:
        h = {"Device-Id": mac, "Client-Id": UUID, "Protocol-Version": "1"}
        return h | ({"Authorization": f"Bearer {token}"} if token is not None else {})


Start = Callable[..., Awaitable[Box]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    boxes: list[Box] = []

    async def _start(mode: str = "paired", limits: LimitsSettings | None = None, poll_interval_s: float = 60.0,
                     **pairing: Any) -> Box:
        clock = FakeClock()
        db = tmp_path / f"xiaozhi-{len(boxes)}.db"
        registry = DeviceRegistry.open(db, clock)
        limits = limits or LimitsSettings()
        pairing_obj = DevicePairing(registry, PairingSettings(mode=mode, **pairing), poll_interval_s=poll_interval_s,
                                    exempt_loopback=limits.exempt_loopback)
        ctx = ServerContext(ServerSettings(host="127.0.0.1", http_port=0, ws_port=0, mdns=False,
                                           hello_timeout_s=5), conversation="echo", limits=limits)
        server = XiaozhiServer(ctx, EchoConversation, pairing=pairing_obj)
        await server.start()
        box = Box(server, aiohttp.ClientSession(), clock, db)
        boxes.append(box)
        return box

    yield _start
    for box in boxes:
        await box.http.close()
        await box.server.stop()


async def say_hello(ws: ClientConnection) -> dict[str, Any]:
    await ws.send(json.dumps(HELLO))
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))


async def closed(ws: ClientConnection) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason or ""


async def refusal(box: Box, headers: dict[str, str] | None = None, url: str | None = None) -> tuple[int | None, str]:
    async with connect(url or box.ws_url, additional_headers=headers or {}) as ws:
        return await closed(ws)


# --- the happy path --------------------------------------------------------------------------


async def test_unknown_device_gets_a_code_then_a_token_after_approval(start: Start,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    box = await start()
    with caplog.at_level(logging.INFO):
        reply = await box.ota()
    activation = reply["activation"]
    code = activation["code"]
    assert len(code) == 6 and code.isdigit()
    assert len(activation["challenge"]) == 32 and activation["challenge"] != MAC
    assert f"xiaozhi device pair {code}" in activation["message"]
    assert 0 < activation["timeout_ms"] <= 600_000
    assert reply["websocket"]["token"] == "" and reply["websocket"]["url"] == box.ws_url  # §1.7: still present
    assert any(code in r.getMessage() and "127.0.0.1" in r.getMessage() for r in caplog.records)
    # the same device asking again (its activation loop re-runs OTA) hears the same code
    assert (await box.ota())["activation"]["code"] == code
    assert await box.activate() == 202
    # not paired yet: the WebSocket refuses it, with the documented reason
    assert await refusal(box, box.headers(None)) == (1008, "device not paired, run `xiaozhi device pair`")
    record = await box.server.pairing.approve(code)
    assert (record.id, record.state, record.board, record.firmware) == (MAC, "paired", "bread-compact-wifi", "2.0.3")
    assert await box.activate() == 200
    reply = await box.ota()
    assert "activation" not in reply
    token = reply["websocket"]["token"]
    assert len(token) == 43
    stored = DeviceRegistry.open(box.db).get(MAC)
    assert stored is not None and stored.token_hash is not None and token not in stored.token_hash  # hash only
    async with connect(box.ws_url, additional_headers=box.headers(token)) as ws:
        hello = await say_hello(ws)
        await ws.send(json.dumps({"type": "listen", "state": "detect", "text": "hi there"}))
        stt = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert stt == {"type": "stt", "text": "hi there", "session_id": hello["session_id"]}


async def test_token_via_query_parameters_like_the_browser_page(start: Start) -> None:
    box = await start()
    token = await box.pair()
    async with connect(f"{box.ws_url}?device-id={MAC}&client-id={UUID}&authorization=Bearer%20{token}") as ws:
        assert (await say_hello(ws))["type"] == "hello"
    assert await refusal(box, url=f"{box.ws_url}?device-id={MAC}&authorization=Bearer%20nope") == (
        1008, "authentication failed")


async def test_each_check_in_rotates_the_token_keeping_the_previous_until_used(start: Start) -> None:
    box = await start()
    first = await box.pair()
    second = (await box.ota())["websocket"]["token"]
    assert second != first
    async with connect(box.ws_url, additional_headers=box.headers(first)) as ws:  # reply was lost: still fine
        await say_hello(ws)
    async with connect(box.ws_url, additional_headers=box.headers(second)) as ws:  # newest in use…
        await say_hello(ws)
    assert await refusal(box, box.headers(first)) == (1008, "authentication failed")  # …retires the old one


# --- refusals --------------------------------------------------------------------------------


async def test_wrong_missing_and_foreign_tokens_are_refused(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    box = await start()
    mine = await box.pair()
    other = await box.pair(OTHER_MAC, "c0ffee00-0000-4000-8000-000000000002")
    with caplog.at_level(logging.WARNING, logger="xiaozhi_local.server.ws"):
        assert await refusal(box, box.headers("x" * 43)) == (1008, "authentication failed")
        assert await refusal(box, box.headers(None)) == (1008, "authentication failed")
        assert await refusal(box, box.headers(other)) == (1008, "authentication failed")  # bound to its device
        assert await refusal(box, box.headers(mine, mac="aa:aa:aa:aa:aa:aa")) == (
            1008, "device not paired, run `xiaozhi device pair`")
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 4 and all("127.0.0.1" in line for line in lines)
    async with connect(box.ws_url, additional_headers=box.headers(other, OTHER_MAC)) as ws:
        await say_hello(ws)


async def test_expired_code_is_reissued_and_the_old_one_no_longer_pairs(start: Start) -> None:
    box = await start(code_ttl_s=600)
    box.server.pairing.registry.new_code = iter(["111111", "222222"]).__next__
    first = (await box.ota())["activation"]
    box.clock.t += 599
    assert (await box.ota())["activation"]["code"] == "111111"  # still valid: the same code
    box.clock.t += 2
    second = (await box.ota())["activation"]
    assert second["code"] == "222222" and second["challenge"] != first["challenge"]
    with pytest.raises(RegistryError, match="no device is waiting with code 111111"):
        await box.server.pairing.approve("111111")
    assert (await box.server.pairing.approve("222222")).id == MAC


async def test_a_flood_of_new_devices_is_capped(start: Start) -> None:
    box = await start(max_pending=5, max_pending_per_address=3,
                      limits=LimitsSettings(exempt_loopback=False, ota_per_minute=1000))
    token = await box.pair()  # an already paired device is not affected by the flood
    for i in range(3):
        await box.ota(f"02:00:00:00:00:{i:02x}")
    reply = await box.ota("02:00:00:00:00:ff", expect=429)
    assert "waiting for pairing" in reply["error"] and reply["_headers"]["Retry-After"] == "60"
    assert len(await box.server.pairing.pending()) == 3
    assert "activation" not in await box.ota()  # the paired device still checks in
    async with connect(box.ws_url, additional_headers=box.headers(token)) as ws:
        await say_hello(ws)


async def test_rate_limits_answer_429(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    box = await start(limits=LimitsSettings(exempt_loopback=False, ota_per_minute=3, activate_per_minute=2,
                                            websocket_per_minute=2))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            await box.ota()
        limited = await box.ota(expect=429)
        await box.ota(expect=429)
        assert [await box.activate() for _ in range(3)] == [202, 202, 429]
        for _ in range(2):
            await refusal(box, box.headers(None))
        with pytest.raises(Exception, match="429"):
            async with connect(box.ws_url, additional_headers=box.headers(None)):
                pass
    assert "too many ota requests" in limited["error"] and int(limited["_headers"]["Retry-After"]) >= 1
    logged = [r.getMessage() for r in caplog.records if "rate limit" in r.getMessage()]
    assert len(logged) == 3 and all("127.0.0.1" in m for m in logged)  # once per kind, not per request
    async with box.http.get(f"http://127.0.0.1:{box.server.http_port}/health") as r:
        assert r.status == 200  # health is not limited


async def test_sessions_per_address(start: Start) -> None:
    box = await start(limits=LimitsSettings(exempt_loopback=False, sessions_per_address=1))
    token = await box.pair()
    async with connect(box.ws_url, additional_headers=box.headers(token)) as first:
        await say_hello(first)
        assert await refusal(box, box.headers(token)) == (1013, "too many sessions from your address, try again later")
        await first.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(first.recv(), 5))["type"] == "pong"


async def test_oversize_frame_from_a_paired_device_closes_only_its_session(start: Start) -> None:
    box = await start()
    token = await box.pair()
    async with connect(box.ws_url, additional_headers=box.headers(token), max_size=None) as ws:
        await say_hello(ws)
        await ws.send(b"\x00" * 70_000)
        code, _ = await closed(ws)
    assert code == 1009
    async with connect(box.ws_url, additional_headers=box.headers(token)) as ws:
        await say_hello(ws)


async def test_oversize_json_message_is_closed_with_1009(start: Start) -> None:
    box = await start(limits=LimitsSettings(max_json_bytes=4096))
    token = await box.pair()
    async with connect(box.ws_url, additional_headers=box.headers(token)) as ws:
        await say_hello(ws)
        await ws.send(json.dumps({"type": "listen", "state": "detect", "text": "x" * 5000}))
        code, reason = await closed(ws)
    assert code == 1009 and "4096" in reason


# --- revocation, re-pairing ------------------------------------------------------------------


async def test_revoke_closes_the_live_session_and_keeps_the_device_out(start: Start,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    box = await start()
    token = await box.pair()
    cli = DeviceRegistry.open(box.db)  # the CLI is another process: another connection
    async with connect(box.ws_url, additional_headers=box.headers(token)) as ws:
        await say_hello(ws)
        cli.revoke(MAC)
        with caplog.at_level(logging.WARNING):
            assert len(await box.server.pairing.check_sessions(box.server.ctx.sessions)) == 1
        assert await closed(ws) == (1008, "device revoked")
    assert any("device revoked" in r.getMessage() and "127.0.0.1" in r.getMessage() for r in caplog.records)
    assert await refusal(box, box.headers(token)) == (1008, "device revoked")
    assert await box.activate() == 202
    reply = await box.ota()  # it may ask to be paired again
    assert reply["websocket"]["token"] == "" and "activation" in reply
    cli.approve(reply["activation"]["code"])
    new_token = (await box.ota())["websocket"]["token"]
    async with connect(box.ws_url, additional_headers=box.headers(new_token)) as ws:
        await say_hello(ws)


async def test_the_watcher_closes_sessions_of_revoked_and_forgotten_devices(start: Start) -> None:
    box = await start(poll_interval_s=0.05)
    token = await box.pair()
    other = await box.pair(OTHER_MAC, "c0ffee00-0000-4000-8000-000000000002")
    cli = DeviceRegistry.open(box.db)
    async with connect(box.ws_url, additional_headers=box.headers(token)) as a, \
            connect(box.ws_url, additional_headers=box.headers(other, OTHER_MAC)) as b:
        await say_hello(a)
        await say_hello(b)
        cli.revoke(MAC)
        assert await closed(a) == (1008, "device revoked")
        cli.forget(OTHER_MAC)
        assert await closed(b) == (1008, "device removed")


async def test_new_client_id_means_repairing_and_rotates_the_token(start: Start) -> None:
    """An NVS erase gives the device a new Client-Id: it must be paired again. Until then the
    MAC alone (e.g. from an impostor) gets nothing, and the old pairing keeps working."""
    box = await start()
    token = await box.pair()
    erased = "11111111-2222-4333-8444-555555555555"
    reply = await box.ota(client_id=erased)
    assert reply["websocket"]["token"] == "" and "activation" in reply
    assert await box.activate(client_id=erased) == 202
    async with connect(box.ws_url, additional_headers=box.headers(token)) as ws:
        await say_hello(ws)
        await box.server.pairing.approve(reply["activation"]["code"])
        await box.server.pairing.check_sessions(box.server.ctx.sessions)
        assert await closed(ws) == (1008, "device paired again; reconnect")
    assert await refusal(box, box.headers(token)) == (1008, "authentication failed")
    assert await box.activate(client_id=erased) == 200
    new_token = (await box.ota(client_id=erased))["websocket"]["token"]
    assert "activation" in await box.ota()  # the old identity is no longer paired
    async with connect(box.ws_url, additional_headers=box.headers(new_token)) as ws:
        await say_hello(ws)


async def test_v2_hmac_is_recorded_but_never_admits(start: Start) -> None:
    box = await start()
    reply = await box.ota()
    body = json.dumps({"algorithm": "hmac-sha256", "serial_number": "SN" + "0" * 30,
                       "challenge": reply["activation"]["challenge"], "hmac": "ab" * 32}).encode()
    assert await box.activate(body=body) == 202
    (request,) = await box.server.pairing.pending()
    assert (request.hmac, request.hmac_challenge_ok, request.serial_number) == ("ab" * 32, True, "SN" + "0" * 30)


# --- open mode -------------------------------------------------------------------------------


async def test_open_mode_admits_and_records_everyone_but_revoked(start: Start,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        box = await start(mode="open")
    assert any("open mode" in r.getMessage() for r in caplog.records)
    async with box.http.get(f"http://127.0.0.1:{box.server.http_port}/health") as r:
        health = await r.json()
    assert health["pairing"]["mode"] == "open" and "any device" in health["pairing"]["warning"]
    reply = await box.ota()
    assert "activation" not in reply and len(reply["websocket"]["token"]) == 43
    assert await box.activate(OTHER_MAC) == 200
    async with connect(box.ws_url, additional_headers=box.headers(None, OTHER_MAC)) as ws:  # no OTA, no token
        await say_hello(ws)
    cli = DeviceRegistry.open(box.db)
    assert {d.id: d.paired_via for d in cli.devices()} == {MAC: "open", OTHER_MAC: "open"}
    cli.revoke(OTHER_MAC)
    assert await refusal(box, box.headers(None, OTHER_MAC)) == (1008, "device revoked")


async def test_health_says_paired_mode(start: Start) -> None:
    box = await start()
    async with box.http.get(f"http://127.0.0.1:{box.server.http_port}/health") as r:
        assert (await r.json())["pairing"] == {"mode": "paired"}
