"""Pairing in tests: an owner who approves every device that asks, and a patient-but-fast device."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from xiaozhi_local.server.pairing import DevicePairing
from xiaozhi_local.sim.ota_client import ActivationPolicy
from xiaozhi_local.store.devices import DeviceRegistry

FAST_ACTIVATION = ActivationPolicy(pending_wait_s=0.05, retry_wait_s=0.05, attempts_per_round=10, max_rounds=40)
"""The firmware's activation loop (§1.6) with millisecond waits."""


async def approve_everyone(pairing: DevicePairing, approved: list[str]) -> None:
    while True:
        for request in await pairing.pending():
            record = await pairing.approve(request.code)
            approved.append(record.id)
        await asyncio.sleep(0.02)


@asynccontextmanager
async def owner_approving(pairing: DevicePairing) -> AsyncIterator[list[str]]:
    """While inside, every pairing request is approved (like `xiaozhi device pair CODE`);
    yields the list of device ids approved so far."""
    approved: list[str] = []
    task = asyncio.create_task(approve_everyone(pairing, approved))
    try:
        yield approved
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def pair_over_http(ota_url: str, db_path: Path, mac: str, client_id: str = "c0ffee00-0000-4000-8000-00000000abcd",
                   timeout: float = 10.0) -> tuple[str, str]:
    """The firmware's pairing flow against a running `xiaozhi serve`, with the owner approving
    through the shared database (as `xiaozhi device pair CODE` does); returns the device's token
    and the WebSocket URL the server gave it."""
    headers = {"Device-Id": mac, "Client-Id": client_id, "User-Agent": "bread-compact-wifi/2.0.3"}
    with httpx.Client(timeout=timeout, trust_env=False) as http:
        reply = http.post(ota_url, headers=headers, json={}).json()
        code = reply["activation"]["code"]
        assert http.post(ota_url + "activate", headers=headers, content=b"{}").status_code == 202
        registry = DeviceRegistry.open(db_path)
        try:
            registry.approve(code)
        finally:
            registry.close()
        assert http.post(ota_url + "activate", headers=headers, content=b"{}").status_code == 200
        reply = http.post(ota_url, headers=headers, json={}).json()
    assert "activation" not in reply
    return str(reply["websocket"]["token"]), str(reply["websocket"]["url"])
