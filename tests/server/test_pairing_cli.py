"""`xiaozhi device pair|list|revoke|rename|forget`: in process against a real database, and as
real processes next to a running `xiaozhi serve` (revocation closes a live session)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import REPO
from tests.helpers.pairing import pair_over_http
from tests.server.test_lifecycle import serve_log, start_serve
from xiaozhi_local.cli import app, device_admin
from xiaozhi_local.store.devices import DeviceInfo, DeviceRegistry

MAC = "a0:85:e3:f4:49:34"
OTHER = "a0:85:e3:00:00:02"


@pytest.fixture
def registry(isolated_env: Path) -> Iterator[DeviceRegistry]:
    """The database `xiaozhi` uses under this test's XIAOZHI_HOME (what `serve` would write)."""
    registry = DeviceRegistry.open(isolated_env / "xiaozhi.db")
    yield registry
    registry.close()


def ask(registry: DeviceRegistry, mac: str = MAC, board: str = "bread-compact-wifi", address: str = "192.168.1.23",
        client_id: str = "cid-1") -> str:
    request, _ = registry.open_request(mac, DeviceInfo(client_id, board, "2.0.3"), address, ttl_s=600,
                                       max_pending=20, max_per_address=4)
    return request.code


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["device", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_pair_by_code_prints_mac_board_and_address(registry: DeviceRegistry) -> None:
    code = ask(registry)
    status, _, err = run("pair", code)
    assert status == 0, err
    assert MAC in err and "bread-compact-wifi" in err and "192.168.1.23" in err
    record = registry.get(MAC)
    assert record is not None and record.state == "paired"


@pytest.mark.parametrize(("code", "needle"), [("12", "6 digits"), ("abcdef", "6 digits"),
                                              ("999999", "no device is waiting with code 999999")])
def test_pair_bad_or_unknown_code_fails_clearly(registry: DeviceRegistry, code: str, needle: str) -> None:
    ask(registry)
    status, _, err = run("pair", code)
    assert status == 1 and needle in err and "Traceback" not in err


def test_pair_yes_approves_the_only_waiting_device_and_refuses_to_guess(registry: DeviceRegistry) -> None:
    ask(registry)
    status, out, err = run("pair", "--yes", "--json")
    assert status == 0, err
    assert json.loads(out)["id"] == MAC and "token_hash" not in out
    ask(registry, OTHER, client_id="c2")
    ask(registry, "a0:85:e3:00:00:03", client_id="c3")
    status, _, err = run("pair", "--yes")
    assert status == 1 and "2 devices are waiting" in err and OTHER in err
    status, _, err = run("pair", "--yes", "--timeout", "0.1")
    assert status == 1


def test_pair_waits_for_a_device_to_ask(registry: DeviceRegistry, isolated_env: Path) -> None:
    status, _, err = run("pair", "--yes", "--timeout", "0")
    assert status == 1 and "no device asked to be paired" in err

    def device_checks_in() -> None:  # `serve` is another process writing the same database
        other = DeviceRegistry.open(isolated_env / "xiaozhi.db")
        ask(other)
        other.close()

    timer = threading.Timer(0.5, device_checks_in)
    timer.start()
    try:
        status, _, err = run("pair", "--yes", "--timeout", "30")
    finally:
        timer.join()
    assert status == 0, err
    assert MAC in err and registry.get(MAC) is not None


def test_interactive_choice(registry: DeviceRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    ask(registry)
    second = ask(registry, OTHER, board="esp-box-3", client_id="c2")
    answers = iter(["7", "r", "2"])
    monkeypatch.setattr(device_admin.Prompt, "ask", lambda *a, **k: next(answers))
    chosen = device_admin._choose(registry, timeout=1)
    assert chosen is not None and chosen.code == second
    monkeypatch.setattr(device_admin.Prompt, "ask", lambda *a, **k: "q")
    assert device_admin._choose(registry, timeout=1) is None


def test_pair_without_code_needs_a_terminal_or_yes(registry: DeviceRegistry) -> None:
    ask(registry)
    status, _, err = run("pair")  # CliRunner's stdin is not a terminal
    assert status == 1 and "--yes" in err


def test_list_rename_revoke_forget(registry: DeviceRegistry) -> None:
    registry.approve(ask(registry))
    waiting = ask(registry, OTHER, board="esp-box-3", client_id="c2")
    status, out, _ = run("list", "--json")
    listing = json.loads(out)
    assert status == 0
    assert [d["id"] for d in listing["devices"]] == [MAC] and listing["devices"][0]["state"] == "paired"
    assert [(p["device_id"], p["code"]) for p in listing["pending"]] == [(OTHER, waiting)]
    assert "token_hash" not in out
    status, out, _ = run("list")
    assert status == 0 and MAC in out and OTHER in out and waiting in out and "pending" in out

    assert run("rename", "A0-85-E3-F4-49-34", "Kitchen")[0] == 0
    assert registry.get(MAC).name == "Kitchen"  # type: ignore[union-attr]
    status, _, err = run("rename", MAC, " ")
    assert status == 1 and "1 to 40" in err

    status, _, err = run("revoke", "kitchen")
    assert status == 0 and "revoked" in err and MAC in err
    assert registry.get(MAC).state == "revoked"  # type: ignore[union-attr]
    status, _, err = run("revoke", OTHER)
    assert status == 1 and f"xiaozhi device pair {waiting}" in err  # waiting, not paired
    status, _, err = run("revoke", "nobody")
    assert status == 1 and "no device 'nobody'" in err

    status, _, err = run("forget", MAC)  # no terminal: confirmation needed
    assert status == 1 and "--yes" in err and registry.get(MAC) is not None
    status, _, err = run("forget", MAC, "--yes")
    assert status == 0 and registry.get(MAC) is None
    status, _, err = run("forget", OTHER, "--yes")  # a waiting device: its request goes
    assert status == 0 and registry.requests() == []
    status, _, err = run("forget", MAC, "--yes")
    assert status == 1 and "no device" in err


def test_every_command_has_help() -> None:
    for command in ("pair", "list", "revoke", "rename", "forget"):
        status, out, _ = run(command, "--help")
        assert status == 0 and "Usage" in out and len(out) > 200


def test_revoke_from_another_process_closes_the_live_session(isolated_env: Path) -> None:
    proc, ota_url = start_serve(isolated_env, "--no-mdns")
    try:
        token, ws_url = pair_over_http(ota_url, isolated_env / "xiaozhi.db", MAC)
        env = {**os.environ, "XIAOZHI_HOME": str(isolated_env)}

        async def session() -> tuple[int | None, str | None]:
            async with connect(ws_url, additional_headers={"Device-Id": MAC, "Authorization": f"Bearer {token}"}) as ws:
                await ws.send(json.dumps({"type": "hello", "version": 1, "transport": "websocket"}))
                assert json.loads(await ws.recv())["type"] == "hello"
                revoke = await asyncio.create_subprocess_exec(
                    sys.executable, str(REPO / "cli.py"), "device", "revoke", MAC, env=env,
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
                _, err = await revoke.communicate()
                assert revoke.returncode == 0, err
                with pytest.raises(ConnectionClosed):
                    async with asyncio.timeout(15):
                        while True:
                            await ws.recv()
                return ws.close_code, ws.close_reason

        assert asyncio.run(session()) == (1008, "device revoked")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    log = serve_log(proc)
    assert "device revoked" in log and "127.0.0.1" in log


def test_serve_open_mode_warns(isolated_env: Path) -> None:
    proc, ota_url = start_serve(isolated_env, "--no-mdns", "--open")
    try:
        health = httpx.get(ota_url.replace("/xiaozhi/ota/", "/health"), trust_env=False).json()
        reply = httpx.post(ota_url, headers={"Device-Id": MAC}, json={}, trust_env=False).json()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert health["pairing"]["mode"] == "open" and "warning" in health["pairing"]
    assert "activation" not in reply and reply["websocket"]["token"]
    assert "open mode" in serve_log(proc)
