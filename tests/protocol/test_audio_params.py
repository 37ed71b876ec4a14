"""Parsing ``audio_params`` per direction: a device hello defaults to the uplink, a server hello
to the downlink (protocol.md §2.2, §2.4)."""

from __future__ import annotations

import pytest

from xiaozhi_local.errors import ProtocolError
from xiaozhi_local.protocol.audio_params import DOWNLINK_DEFAULT, UPLINK_DEFAULT, AudioParams


def test_device_hello_defaults_are_the_uplink() -> None:
    assert AudioParams.from_dict({}) == UPLINK_DEFAULT == AudioParams("opus", 16000, 1, 60)
    assert AudioParams.from_dict({"frame_duration": 20}) == AudioParams("opus", 16000, 1, 20)


def test_server_hello_defaults_are_the_downlink() -> None:
    assert AudioParams.from_server_hello({}) == DOWNLINK_DEFAULT == AudioParams("opus", 24000, 1, 60)
    # a server hello naming only the frame duration still means 24 kHz, not the uplink's 16 kHz
    assert AudioParams.from_server_hello({"frame_duration": 20}) == AudioParams("opus", 24000, 1, 20)
    assert AudioParams.from_server_hello({"sample_rate": 16000}) == AudioParams("opus", 16000, 1, 60)


def test_explicit_defaults_and_type_errors() -> None:
    base = AudioParams("opus", 48000, 2, 40)
    assert AudioParams.from_dict({"channels": 1}, defaults=base) == AudioParams("opus", 48000, 1, 40)
    with pytest.raises(ProtocolError) as info:
        AudioParams.from_server_hello({"sample_rate": "24000"})
    assert info.value.close_code == 1008
    with pytest.raises(ProtocolError):
        AudioParams.from_server_hello(["not", "an", "object"])
