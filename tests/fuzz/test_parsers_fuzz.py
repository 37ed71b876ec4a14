"""Property-based fuzzing of every parser a LAN client can reach, with a bounded number of
cases (``bench/fuzz.py`` runs 100,000+). The contracts are in :mod:`tests.fuzz.targets`."""

from __future__ import annotations

import json
import random
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import targets
from tests.fuzz.mutate import ACTIVATE_SEEDS, HEADER_NAMES, MESSAGE_SEEDS, Mutator
from tests.helpers.firmware import FIRMWARE_BODY, FIRMWARE_HEADERS

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
            | st.sampled_from(["hello", "listen", "start", "stop", "detect", "abort", "mcp", "websocket", "opus",
                               "auto", "manual", "realtime", "2.0", 10000]))
_KEYS = st.sampled_from(["type", "state", "mode", "text", "version", "transport", "features", "audio_params",
                         "format", "sample_rate", "channels", "frame_duration", "payload", "session_id", "reason",
                         "jsonrpc", "id", "result", "error", "tools", "nextCursor", "content", "isError",
                         "message", "algorithm", "serial_number", "challenge", "hmac", "Payload"]) | st.text(max_size=6)
JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_KEYS, inner, max_size=6),
                    max_leaves=25)
SEEDED = st.integers(min_value=0, max_value=2**32 - 1).map(lambda n: Mutator(random.Random(n)))


@FUZZ
@given(version=st.sampled_from([1, 2, 3, 0, 4, 255]), data=st.binary(max_size=300))
def test_binary_frames(version: int, data: bytes) -> None:
    targets.check_frame(version, data)


@FUZZ
@given(version=st.sampled_from([2, 3]), size=st.integers(0, 2**32 - 1), payload=st.binary(max_size=64),
       timestamp=st.integers(0, 2**32 - 1))
def test_binary_frames_with_lying_headers(version: int, size: int, payload: bytes, timestamp: int) -> None:
    header = (struct.pack(">HHIII", 2, 0, 0, timestamp, size) if version == 2
              else struct.pack(">BBH", 0, 0, size % 65536))
    targets.check_frame(version, header + payload)


@FUZZ
@given(st.one_of(JSON.map(json.dumps), st.text(max_size=200), st.binary(max_size=200),
                 st.sampled_from(MESSAGE_SEEDS).map(json.dumps)))
def test_device_json_messages(text: str | bytes) -> None:
    targets.check_message(text)


@FUZZ
@given(mutator=SEEDED)
def test_mutated_device_json_messages(mutator: Mutator) -> None:
    targets.check_message(mutator.message())


def test_message_size_limit_and_deep_nesting() -> None:
    targets.check_message(json.dumps({"type": "listen", "text": "x" * 40000}), max_bytes=32768)
    targets.check_message("[" * 100_000 + "]" * 100_000)
    targets.check_message('{"type":' * 50_000)


_HEADERS = st.dictionaries(st.sampled_from(HEADER_NAMES) | st.text(min_size=1, max_size=10),
                           st.text(max_size=80), max_size=8)


@FUZZ
@given(headers=_HEADERS, body=st.one_of(st.none(), st.binary(max_size=300), JSON.map(lambda v: json.dumps(v).encode()),
                                        st.just(json.dumps(FIRMWARE_BODY).encode())),
       content_type=st.one_of(st.none(), st.text(max_size=40)))
def test_ota_requests(headers: dict[str, str], body: bytes | None, content_type: str | None) -> None:
    targets.check_ota(headers, body, content_type)


@FUZZ
@given(mutator=SEEDED)
def test_mutated_firmware_ota_requests(mutator: Mutator) -> None:
    targets.check_ota(mutator.headers(), mutator.ota_body(), FIRMWARE_HEADERS["Content-Type"])


@FUZZ
@given(st.one_of(st.binary(max_size=300), JSON.map(lambda v: json.dumps(v).encode()),
                 st.sampled_from(ACTIVATE_SEEDS).map(lambda v: json.dumps(v).encode())))
def test_activate_bodies(body: bytes) -> None:
    targets.check_activate(body)


@FUZZ
@given(mutator=SEEDED)
def test_mutated_activate_bodies(mutator: Mutator) -> None:
    targets.check_activate(mutator.activate_body())


@FUZZ
@given(st.text(max_size=100) | st.sampled_from(["Bearer", "Bearer ", "bearer  x ", "Basic abc", " "]))
def test_authorization_headers(value: str) -> None:
    targets.check_bearer(value)


@FUZZ
@given(st.one_of(JSON, SEEDED.map(lambda m: m.mcp_payload())))
def test_mcp_responses(payload: Any) -> None:
    targets.check_mcp(payload)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_opus_garbage(packet: bytes) -> None:
    targets.check_opus(packet)
