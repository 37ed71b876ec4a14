"""The simulator's OTA check-version and activation (protocol.md §1.3-§1.6).

The server side is :class:`tests.sim.doubles.OtaDouble`, a small aiohttp app on 127.0.0.1
standing in for the real OTA endpoint (written separately). The request it receives is also
read with the server's own pure parser, ``xiaozhi_local.protocol.ota.parse_ota_request``.
"""

from __future__ import annotations

import json
import random
import socket
import uuid

import pytest

from tests.sim.doubles import OtaDouble
from xiaozhi_local.audio.clock import FakeClock
from xiaozhi_local.errors import PairingRequiredError, SimulatorError
from xiaozhi_local.protocol.ota import parse_ota_request
from xiaozhi_local.sim.identity import DeviceIdentity, normalize_mac, random_mac, system_info
from xiaozhi_local.sim.ota_client import ActivationPolicy, OtaClient
from xiaozhi_local.sim.ota_reply import activate_url, parse_ota_reply, require_websocket

ACTIVATION = {"code": "123456", "challenge": "a0:85:e3:f4:49:34", "message": "http://console\n123456"}


def identity() -> DeviceIdentity:
    return DeviceIdentity.create("A0-85-E3-F4-49-34")


def test_identity_mac_and_uuid() -> None:
    rng = random.Random(7)
    for _ in range(50):
        mac = random_mac(rng)
        first = int(mac[:2], 16)
        assert normalize_mac(mac) == mac and first & 0x02 and not first & 0x01  # local, unicast
    assert normalize_mac("AABBCCDDEEFF") == "aa:bb:cc:dd:ee:ff"
    with pytest.raises(SimulatorError, match="not a MAC"):
        normalize_mac("aa:bb:cc")
    ident = identity()
    assert ident.mac == "a0:85:e3:f4:49:34" and uuid.UUID(ident.client_id).version == 4
    assert ident.user_agent == "bread-compact-wifi/2.0.3"


async def test_check_version_sends_firmware_headers_and_body() -> None:
    ident = identity()
    async with OtaDouble(version=3, token="tok").running() as ota:
        outcome = await OtaClient(ota.url, ident).run()
    assert outcome.checks == 1 and outcome.activation_code is None and outcome.activate_statuses == []
    [(kind, headers, body)] = ota.requests
    assert kind == "ota"
    assert headers["Device-Id"] == "a0:85:e3:f4:49:34"
    assert headers["Client-Id"] == ident.client_id
    assert headers["User-Agent"] == "bread-compact-wifi/2.0.3"
    assert headers["Activation-Version"] == "1" and "Serial-Number" not in headers
    assert headers["Accept-Language"] == "zh-CN" and headers["Content-Type"] == "application/json"
    assert "Accept-Encoding" not in headers and "Accept" not in headers  # not offered by the firmware either
    sent = json.loads(body)
    assert sent == system_info(ident)
    assert isinstance(sent["minimum_free_heap_size"], str)  # a string on real firmware
    assert {"chip_info", "application", "partition_table", "ota", "display", "board"} <= set(sent)
    parsed = parse_ota_request(headers, body, headers["Content-Type"])  # the server's own reader
    assert (parsed.device_id, parsed.client_id, parsed.board_type, parsed.app_version) == (
        ident.mac, ident.client_id, "bread-compact-wifi", "2.0.3")  # fmt: skip
    ws = require_websocket(outcome.reply)
    assert (ws.url, ws.token, ws.version) == (ota.ws_url, "tok", 3)
    assert outcome.reply.server_time_ms == 1767225600000


async def test_activation_202_202_200_then_ota_again() -> None:
    clock = FakeClock()
    logs: list[str] = []
    double = OtaDouble(activation=ACTIVATION, activate_statuses=[202, 202, 200])
    async with double.running() as ota:
        outcome = await OtaClient(ota.url, identity(), clock=clock, log=logs.append).run(wait_for_pairing=True)
    assert [kind for kind, _, _ in ota.requests] == ["ota", "activate", "activate", "activate", "ota"]
    assert outcome.activate_statuses == [202, 202, 200] and outcome.checks == 2
    assert outcome.activation_code == "123456" and outcome.reply.activation is None
    assert clock.sleeps == [3.0, 3.0]  # the firmware waits 3 s after each 202
    for _, headers, body in ota.requests[1:4]:
        assert body == b"{}" and headers["Device-Id"] == "a0:85:e3:f4:49:34"
        assert headers["Activation-Version"] == "1"
    assert any("xiaozhi device pair 123456" in line for line in logs)


async def test_activation_other_status_waits_10_s_and_rounds_rerun_ota() -> None:
    clock = FakeClock()
    policy = ActivationPolicy(attempts_per_round=2)
    double = OtaDouble(activation=ACTIVATION, activate_statuses=[500, 202, 200])
    async with double.running() as ota:
        outcome = await OtaClient(ota.url, identity(), clock=clock, policy=policy).run(wait_for_pairing=True)
    kinds = [kind for kind, _, _ in ota.requests]
    assert kinds == ["ota", "activate", "activate", "ota", "activate", "ota"]  # 2 attempts per round
    assert clock.sleeps == [10.0, 3.0] and outcome.checks == 3


async def test_short_real_waits_also_work() -> None:
    policy = ActivationPolicy(pending_wait_s=0.01, retry_wait_s=0.01)
    async with OtaDouble(activation=ACTIVATION, activate_statuses=[202, 200]).running() as ota:
        outcome = await OtaClient(ota.url, identity(), policy=policy).run(wait_for_pairing=True)
    assert outcome.activate_statuses == [202, 200] and 0.01 <= outcome.elapsed_s < 2


async def test_without_waiting_an_unpaired_device_raises_with_the_code() -> None:
    async with OtaDouble(activation=ACTIVATION).running() as ota:
        with pytest.raises(PairingRequiredError, match=r"xiaozhi device pair 123456") as info:
            await OtaClient(ota.url, identity(), clock=FakeClock()).run()
    assert info.value.code == "123456"
    assert [kind for kind, _, _ in ota.requests] == ["ota", "activate"]


async def test_max_rounds_bounds_the_wait() -> None:
    policy = ActivationPolicy(attempts_per_round=1, max_rounds=2)
    async with OtaDouble(activation=ACTIVATION).running() as ota:
        with pytest.raises(PairingRequiredError, match="still not paired after 2"):
            await OtaClient(ota.url, identity(), clock=FakeClock(), policy=policy).run(wait_for_pairing=True)


async def test_code_without_challenge_is_reported() -> None:
    async with OtaDouble(activation={"code": "123456"}).running() as ota:
        with pytest.raises(SimulatorError, match="no 'challenge'"):
            await OtaClient(ota.url, identity(), clock=FakeClock()).run(wait_for_pairing=True)


async def test_activation_block_after_200_is_reported() -> None:
    double = OtaDouble(extra={"activation": ACTIVATION}, activate_statuses=[200])
    async with double.running() as ota:
        with pytest.raises(SimulatorError, match="still carries an 'activation' block"):
            await OtaClient(ota.url, identity(), clock=FakeClock()).run(wait_for_pairing=True)


@pytest.mark.parametrize(
    ("double", "fragment"),
    [
        (OtaDouble(status=500), "HTTP 500"),
        (OtaDouble(body=b"<html>hi</html>"), "not JSON"),
        (OtaDouble(body=b"[1, 2]"), "not an object"),
    ],
)
async def test_bad_ota_answers(double: OtaDouble, fragment: str) -> None:
    async with double.running() as ota:
        with pytest.raises(SimulatorError, match=fragment):
            await OtaClient(ota.url, identity()).run()


async def test_unreachable_server() -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SimulatorError, match="cannot reach"):
        await OtaClient(f"http://127.0.0.1:{port}/xiaozhi/ota/", identity()).run()


def test_bad_ota_url() -> None:
    with pytest.raises(SimulatorError, match="not an OTA URL"):
        OtaClient("ws://127.0.0.1:8000/xiaozhi/v1/", identity())


def test_transport_choice_like_the_firmware() -> None:
    mqtt = parse_ota_reply(b'{"mqtt":{"endpoint":"x"},"websocket":{"url":"ws://127.0.0.1:8000/x/"}}')
    with pytest.raises(SimulatorError, match="MQTT"):
        require_websocket(mqtt)
    with pytest.raises(SimulatorError, match="no usable 'websocket'"):
        require_websocket(parse_ota_reply(b'{"firmware":{"version":"1"}}'))
    with pytest.raises(SimulatorError, match="not a ws://"):
        require_websocket(parse_ota_reply(b'{"websocket":{"url":"http://127.0.0.1:8000/"}}'))
    with pytest.raises(SimulatorError, match="version 7"):
        require_websocket(parse_ota_reply(b'{"websocket":{"url":"ws://127.0.0.1:8000/x/","version":7}}'))
    reply = parse_ota_reply(b'{"websocket":{"url":"ws://127.0.0.1:8000/x/"},"activation":{"message":"hi"}}')
    assert reply.activation is None  # neither code nor challenge: the loop ends (§1.6 item 1)
    assert require_websocket(reply).token == "" and require_websocket(reply).version is None


def test_activate_url_appends_a_slash_first() -> None:
    assert activate_url("http://h:8003/xiaozhi/ota/") == "http://h:8003/xiaozhi/ota/activate"
    assert activate_url("http://h:8003/xiaozhi/ota") == "http://h:8003/xiaozhi/ota/activate"


async def test_newer_firmware_offer_is_a_warning() -> None:
    extra = {"firmware": {"version": "9.0.0", "url": "http://127.0.0.1/fw.bin"}}
    async with OtaDouble(extra=extra).running() as ota:
        outcome = await OtaClient(ota.url, identity()).run()
    assert any("9.0.0" in w and "reboot" in w for w in outcome.warnings)
