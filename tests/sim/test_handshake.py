"""The simulator reads a server hello the way ``ParseServerHello`` does (protocol.md §2.2)."""

from __future__ import annotations

from typing import Any

import pytest

from xiaozhi_local.sim.handshake import accept_server_hello


@pytest.mark.parametrize(
    ("params", "rate", "frame_ms"),
    [
        (None, 24000, 60),  # absent: the firmware's 24000 / 60
        ({"frame_duration": 20}, 24000, 20),
        ({"sample_rate": 16000}, 16000, 60),
        ({"sample_rate": "16000", "frame_duration": True}, 24000, 60),  # not JSON numbers: ignored like cJSON
        ({"format": "opus", "sample_rate": 48000, "channels": 1, "frame_duration": 120}, 48000, 120),
    ],
)
def test_simulator_reads_server_hello_like_the_firmware(params: Any, rate: int, frame_ms: int) -> None:
    message: dict[str, Any] = {"type": "hello", "transport": "websocket", "session_id": "s"}
    if params is not None:
        message["audio_params"] = params
    hello = accept_server_hello(message)
    assert (hello.audio_params.sample_rate, hello.audio_params.frame_duration) == (rate, frame_ms)
