"""OTA check-version / activation parsing and replies (protocol.md §1, §8 items 1-3)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from tests.helpers.firmware import FIRMWARE_BODY, FIRMWARE_HEADERS, MAC, UUID
from xiaozhi_local.errors import ActivationBodyError
from xiaozhi_local.protocol.ota import (
    ActivateRequest,
    Activation,
    build_ota_reply,
    is_loopback_url,
    is_mac,
    parse_activate_body,
    parse_ota_request,
    verify_activation_hmac,
)


def _reply(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "now_ms": 1767225600000,
        "tz_offset_min": 480,
        "firmware_version": "2.0.3",
        "websocket_url": "ws://192.168.1.10:8000/xiaozhi/v1/",
        "token": "",
        "protocol_version": None,
        "activation": None,
    }
    kwargs.update(overrides)
    return build_ota_reply(**kwargs)


# --- request parsing ---------------------------------------------------------------------


def test_firmware_request() -> None:
    req = parse_ota_request(FIRMWARE_HEADERS, json.dumps(FIRMWARE_BODY).encode(), "application/json")
    assert req.device_id == MAC
    assert req.device_id_is_mac
    assert req.client_id == UUID
    assert req.activation_version == "1"
    assert req.serial_number is None
    assert req.user_agent == "bread-compact-wifi/2.0.3"
    assert (req.board_name, req.firmware_version) == ("bread-compact-wifi", "2.0.3")
    assert req.app_version == "2.0.3"
    assert req.current_version == "2.0.3"
    assert req.board_type == "bread-compact-wifi"
    assert req.language == "zh-CN"
    assert req.body["chip_model_name"] == "esp32s3"
    assert req.body_error is None


def test_headers_are_case_insensitive_and_serial_number_is_read() -> None:
    headers = {k.lower(): v for k, v in FIRMWARE_HEADERS.items()}
    headers["serial-number"] = "SN" + "0" * 30
    headers["activation-version"] = "2"
    req = parse_ota_request(headers, b"{}")
    assert req.device_id == MAC
    assert req.serial_number == "SN" + "0" * 30
    assert req.activation_version == "2"


def test_body_ids_are_the_fallback_and_macs_are_lowercased() -> None:
    body = {"mac_address": "A0:85:E3:F4:49:34", "uuid": UUID, "language": "en-US"}
    req = parse_ota_request({}, json.dumps(body).encode())
    assert req.device_id == MAC
    assert req.client_id == UUID
    assert req.language == "en-US"
    assert req.user_agent is None and req.board_name is None and req.current_version is None


def test_py_xiaozhi_small_body() -> None:
    body = {
        "application": {"version": "1.2.0", "elf_sha256": "ab" * 32},
        "board": {"type": "py-xiaozhi", "name": "py", "ip": "10.0.0.2", "mac": MAC},
    }
    headers = {"Device-Id": MAC, "Client-Id": UUID, "Activation-Version": "1.2.0"}
    req = parse_ota_request(headers, json.dumps(body).encode())
    assert req.app_version == "1.2.0"
    assert req.board_type == "py-xiaozhi"
    assert req.activation_version == "1.2.0"


def test_user_agent_version_is_used_when_body_has_none() -> None:
    req = parse_ota_request({"User-Agent": "lichuang-dev/1.9.2"}, None)
    assert req.current_version == "1.9.2"
    assert req.board_name == "lichuang-dev"
    odd = parse_ota_request({"User-Agent": "curl"}, None)
    assert odd.board_name is None and odd.firmware_version is None


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (None, None, None),
        (b"", "application/json", None),
        (b"  \n", None, None),
        (b"not json", "text/plain", "body is not JSON (content-type text/plain)"),
        (b"\xff\xfe\x00", None, "body is not UTF-8"),
        (b"[1,2,3]", "application/json", "body is not a JSON object"),
        (b'"str"', None, "body is not a JSON object"),
        (b"[" * 50_000 + b"]" * 50_000, None, "is over"),
        (b"[" * 20_000 + b"]" * 20_000, None, "body is not JSON"),
        (b'{"application": {"version": 5}, "board": "x"}', None, None),
    ],
)
def test_bad_bodies_never_raise(body: bytes | None, content_type: str | None, error: str | None) -> None:
    req = parse_ota_request(FIRMWARE_HEADERS, body, content_type)
    assert req.device_id == MAC  # headers still count
    assert req.client_id == UUID
    assert req.app_version is None  # wrongly typed or absent
    assert req.board_type is None
    assert req.current_version == "2.0.3"  # from the User-Agent
    if error is None:
        assert req.body_error is None
    else:
        assert req.body_error is not None and error in req.body_error


def test_no_headers_no_body() -> None:
    req = parse_ota_request({}, None)
    assert req.device_id is None and req.client_id is None
    assert req.body == {} and req.body_error is None


def test_blank_headers_fall_back_to_body() -> None:
    body = json.dumps({"mac_address": MAC}).encode()
    req = parse_ota_request({"Device-Id": "   ", "Client-Id": ""}, body)
    assert req.device_id == MAC
    assert req.client_id is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MAC, True),
        ("A0:85:E3:F4:49:34", True),
        ("a0-85-e3-f4-49-34", True),
        ("a0:85-e3:f4:49:34", False),
        ("a0:85:e3:f4:49", False),
        ("a0:85:e3:f4:49:34:00", False),
        ("a0:85:e3:f4:49:3g", False),
        (MAC + "\n", False),
        ("web_test_client", False),
        ("", False),
        (None, False),
        (12345, False),
    ],
)
def test_is_mac(value: object, expected: bool) -> None:
    assert is_mac(value) is expected


# --- replies -----------------------------------------------------------------------------


def test_normal_reply_shape() -> None:
    reply = _reply()
    assert reply == {
        "server_time": {"timestamp": 1767225600000, "timezone_offset": 480},
        "firmware": {"version": "2.0.3", "url": "", "force": 0},
        "websocket": {"url": "ws://192.168.1.10:8000/xiaozhi/v1/", "token": ""},
    }
    json.dumps(reply)  # serialisable


def test_exactly_one_transport_section() -> None:
    for version in (None, 1, 2, 3):
        reply = _reply(protocol_version=version, activation=Activation("123456", MAC))
        transports = [key for key in ("websocket", "mqtt") if key in reply]
        assert transports == ["websocket"]
        if version is None:
            assert "version" not in reply["websocket"]
        else:
            assert reply["websocket"]["version"] == version


def test_reply_with_activation_has_code_and_challenge() -> None:
    reply = _reply(token="tok", activation=Activation("123456", challenge=MAC))
    assert reply["activation"] == {
        "code": "123456",
        "message": "123456",
        "challenge": MAC,
        "timeout_ms": 30000,
    }
    assert reply["websocket"]["token"] == "tok"
    custom = Activation("042", "c", message="http://console\n042", timeout_ms=1000)
    assert _reply(activation=custom)["activation"]["message"] == "http://console\n042"


def test_activation_cannot_be_built_wrong() -> None:
    with pytest.raises(TypeError):
        Activation("123456")  # type: ignore[call-arg]
    cases = [("", "c", "code"), ("12a456", "c", "code"), ("123456", "", "challenge")]
    cases.append((123456, "c", "code"))  # type: ignore[arg-type]
    for code, challenge, field in cases:
        with pytest.raises(ValueError, match=field):
            Activation(code, challenge)
    with pytest.raises(ValueError, match="timeout_ms"):
        Activation("1", "c", timeout_ms=-5)
    with pytest.raises(TypeError):
        _reply(activation={"code": "1", "challenge": "c"})


@pytest.mark.parametrize(
    ("overrides", "exc"),
    [
        ({"websocket_url": "http://192.168.1.10:8000/"}, ValueError),
        ({"websocket_url": "ws://a/"}, ValueError),
        ({"protocol_version": 4}, ValueError),
        ({"protocol_version": True}, ValueError),
        ({"firmware_version": None}, TypeError),
        ({"token": None}, TypeError),
        ({"now_ms": 1.5}, TypeError),
    ],
)
def test_reply_argument_checks(overrides: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        _reply(**overrides)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("ws://localhost:8000/xiaozhi/v1/", True),
        ("ws://127.0.0.1:8000/", True),
        ("ws://[::1]:8000/", True),
        ("ws://0.0.0.0:8000/", True),
        ("ws://192.168.1.10:8000/xiaozhi/v1/", False),
        ("wss://xiaozhi.lan/xiaozhi/v1/", False),
    ],
)
def test_is_loopback_url(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


# --- /activate ---------------------------------------------------------------------------

V2_BODY = {
    "algorithm": "hmac-sha256",
    "serial_number": "SN-0001",
    "challenge": MAC,
    "hmac": hmac.new(b"key0", MAC.encode(), hashlib.sha256).hexdigest(),
}


@pytest.mark.parametrize("body", [None, b"", b"{}", b" {} ", b'{"unrelated": 1}'])
def test_v1_activate_bodies(body: bytes | None) -> None:
    req = parse_activate_body(body)
    assert req == ActivateRequest()
    assert req.is_v2 is False


def test_v2_activate_body_and_py_xiaozhi_wrapper() -> None:
    plain = parse_activate_body(json.dumps(V2_BODY).encode())
    wrapped = parse_activate_body(json.dumps({"Payload": V2_BODY}).encode())
    assert plain == wrapped
    assert plain.is_v2
    assert plain.serial_number == "SN-0001"
    assert plain.challenge == MAC
    upper = dict(V2_BODY, hmac=V2_BODY["hmac"].upper(), algorithm="HMAC-SHA256")
    assert parse_activate_body(json.dumps(upper).encode()) == plain


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"garbage", "not JSON"),
        (b"\xff", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"Payload": "x"}', "Payload"),
        (json.dumps(dict(V2_BODY, hmac=None)).encode(), "hmac"),
        (json.dumps({"challenge": "c"}).encode(), "algorithm, serial_number, hmac"),
        (json.dumps(dict(V2_BODY, algorithm="md5")).encode(), "algorithm"),
        (json.dumps(dict(V2_BODY, hmac="abc")).encode(), "64 hex"),
        (json.dumps(dict(V2_BODY, serial_number=7)).encode(), "serial_number"),
        (b"{" + b" " * 5000 + b"}", "over"),
    ],
)
def test_bad_activate_bodies(body: bytes, needle: str) -> None:
    with pytest.raises(ActivationBodyError) as info:
        parse_activate_body(body)
    assert needle in str(info.value)
    assert info.value.http_status == 400


def test_verify_activation_hmac() -> None:
    req = parse_activate_body(json.dumps(V2_BODY).encode())
    assert verify_activation_hmac(b"key0", req, MAC) is True
    assert verify_activation_hmac(b"other", req, MAC) is False
    assert verify_activation_hmac(b"key0", req, "another-challenge") is False
    assert verify_activation_hmac(b"key0", ActivateRequest(), MAC) is False
