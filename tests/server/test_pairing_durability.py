"""Durability: `xiaozhi serve` killed with SIGKILL in the middle of a turn, of a pairing and of a
stream of check-ins that write the registry. After a restart the database is intact, every
committed record is there, a waiting device can still be approved with its code, and the paired
device reconnects with the last token it received."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import connect

from tests.helpers.pairing import pair_over_http
from tests.server.test_lifecycle import start_serve
from xiaozhi_local.audio.opus import OpusEncoder
from xiaozhi_local.store.devices import DeviceRegistry

MAC = "a0:85:e3:f4:49:34"
CLIENT = "c0ffee00-0000-4000-8000-00000000abcd"  # pair_over_http's default Client-Id
WAITING = "a0:85:e3:00:00:09"


def checkin_headers(mac: str = MAC, client_id: str = CLIENT) -> dict[str, str]:
    return {"Device-Id": mac, "Client-Id": client_id, "User-Agent": "bread-compact-wifi/2.0.3"}


class CheckIns(threading.Thread):
    """The paired device rebooting over and over: every OTA reply rotates its token (a registry
    write). Remembers the last token it actually received."""

    def __init__(self, ota_url: str):
        super().__init__(daemon=True)
        self.ota_url = ota_url
        self.last_token: str | None = None
        self.count = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5, trust_env=False) as http:
            while not self.stop.is_set():
                try:
                    reply = http.post(self.ota_url, headers=checkin_headers(), json={}).json()
                except (httpx.HTTPError, ValueError):
                    return  # the server died
                self.last_token = reply["websocket"]["token"]
                self.count += 1


def rows(db: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return {r["id"]: dict(r) for r in conn.execute("SELECT * FROM devices")}


async def start_turn_and_wait_for_audio(ws_url: str, token: str) -> None:
    """Speak 3 s in manual mode and return once the echo reply is playing."""
    async with connect(ws_url, additional_headers={"Device-Id": MAC, "Authorization": f"Bearer {token}"}) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "transport": "websocket"}))
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send(json.dumps({"type": "listen", "state": "start", "mode": "manual"}))
        t = np.arange(16000 * 3) / 16000
        for packet in OpusEncoder(sample_rate=16000, frame_ms=60).encode_all(
                (6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)):
            await ws.send(packet)
        await ws.send(json.dumps({"type": "listen", "state": "stop"}))
        frames = 0
        async with asyncio.timeout(20):
            while frames < 5:
                if isinstance(await ws.recv(), bytes):
                    frames += 1
        return  # leaving the socket open is fine: the server is about to die


async def conversation(ws_url: str, token: str) -> str:
    async with connect(ws_url, additional_headers={"Device-Id": MAC, "Authorization": f"Bearer {token}"}) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "transport": "websocket"}))
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send(json.dumps({"type": "listen", "state": "detect", "text": "back again"}))
        async with asyncio.timeout(10):
            while True:
                raw = await ws.recv()
                if isinstance(raw, str) and json.loads(raw)["type"] == "stt":
                    return str(json.loads(raw)["text"])


def test_sigkill_mid_turn_and_mid_pairing_loses_nothing_committed(isolated_env: Path) -> None:
    db = isolated_env / "xiaozhi.db"
    proc, ota_url = start_serve(isolated_env, "--no-mdns")
    try:
        token, ws_url = pair_over_http(ota_url, db, MAC)
        # a second device is half-way through pairing: it has its code and polls /activate
        with httpx.Client(trust_env=False) as http:
            code = http.post(ota_url, headers=checkin_headers(WAITING, "w"), json={}).json()["activation"]["code"]
            assert http.post(ota_url + "activate", headers=checkin_headers(WAITING, "w"), content=b"{}").status_code \
                == 202
        asyncio.run(start_turn_and_wait_for_audio(ws_url, token))
        checkins = CheckIns(ota_url)
        checkins.start()
        while checkins.count < 20:  # registry writes are in full flow
            checkins.join(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        checkins.stop.set()
        checkins.join(10)
        before = rows(db)
    finally:
        if proc.poll() is None:
            proc.kill()
    last_token = checkins.last_token
    assert last_token is not None

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert before[MAC]["state"] == "paired" and before[MAC]["token_hash"]

    proc, ota_url = start_serve(isolated_env, "--no-mdns")
    try:
        assert rows(db) == before  # the restart itself changed nothing
        # the device reconnects with the last token it received, without a new check-in
        health = httpx.get(ota_url.replace("/xiaozhi/ota/", "/health"), trust_env=False).json()
        assert asyncio.run(conversation(health["websocket_url"], last_token)) == "back again"
        # the waiting device's code still pairs it
        registry = DeviceRegistry.open(db)
        assert registry.approve(code).id == WAITING
        registry.close()
        with httpx.Client(trust_env=False) as http:
            assert http.post(ota_url + "activate", headers=checkin_headers(WAITING, "w"), content=b"{}").status_code \
                == 200
            reply = http.post(ota_url, headers=checkin_headers(WAITING, "w"), json={}).json()
        assert "activation" not in reply and reply["websocket"]["token"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)

