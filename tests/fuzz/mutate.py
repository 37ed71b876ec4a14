"""A small seeded mutation fuzzer: valid protocol samples, bent byte- and JSON-wise.

Used by ``bench/fuzz.py`` (hundreds of thousands of cases) and by the socket-level fuzz test
(a few hundred). Everything derives from one :class:`random.Random`, so a failing case is
reproduced by its seed and index.
"""

from __future__ import annotations

import json
import random
import struct
from typing import Any, Final

from tests.helpers.firmware import FIRMWARE_BODY, FIRMWARE_HEADERS, MAC

INTERESTING_BYTES: Final = [b"\x00", b"\xff", b"\x7f", b"\x80", b"{", b"}", b"[", b"\"", b"\\", b"\xc3",
                            b"\xed\xa0\x80"]
INTERESTING_JSON: Final[list[Any]] = [None, True, False, 0, -1, 2**31, 2**63, -(2**63), 1e308, -0.0, "", "\u0000",
                                      "x" * 1000, [], {}, [[[[[]]]]], {"type": None}, "hello", "listen", 10000]

MESSAGE_SEEDS: Final[list[dict[str, Any]]] = [
    {"type": "hello", "version": 1, "transport": "websocket", "features": {"mcp": True},
     "audio_params": {"format": "opus", "sample_rate": 16000, "channels": 1, "frame_duration": 60}},
    {"type": "listen", "state": "start", "mode": "auto", "session_id": "abc"},
    {"type": "listen", "state": "stop"},
    {"type": "listen", "state": "detect", "text": "你好小智"},
    {"type": "abort", "reason": "wake_word_detected"},
    {"type": "mcp", "payload": {"jsonrpc": "2.0", "id": 10000, "result": {"tools": [
        {"name": "self.get_device_status", "description": "d", "inputSchema": {"type": "object", "properties": {}}}],
        "nextCursor": "x"}}},
    {"type": "mcp", "payload": {"jsonrpc": "2.0", "id": 10002, "result": {"content": [{"type": "text", "text": "ok"}],
                                                                         "isError": False}}},
    {"type": "mcp", "payload": {"jsonrpc": "2.0", "id": 10001, "error": {"code": -32601, "message": "no"}}},
    {"type": "ping"},
    {"type": "goodbye", "session_id": "abc"},
    {"type": "iot", "descriptors": []},
]

ACTIVATE_SEEDS: Final[list[Any]] = [
    {},
    {"algorithm": "hmac-sha256", "serial_number": "SN" + "0" * 30, "challenge": "c" * 32, "hmac": "ab" * 32},
    {"Payload": {"algorithm": "hmac-sha256", "serial_number": "SN1", "challenge": MAC, "hmac": "0f" * 32}},
]

HEADER_NAMES: Final = ["Device-Id", "Client-Id", "Activation-Version", "Serial-Number", "User-Agent",
                       "Accept-Language", "Content-Type", "Authorization", "Protocol-Version", "X-Junk"]


class Mutator:
    def __init__(self, rng: random.Random):
        self.rng = rng

    # ---- bytes ------------------------------------------------------------------------------
    def bytes_(self, seed: bytes, max_len: int = 4096) -> bytes:
        data = bytearray(seed)
        for _ in range(self.rng.choice((1, 1, 2, 3, 8))):
            self._mutate_once(data)
        return bytes(data[:max_len])

    def _mutate_once(self, data: bytearray) -> None:
        rng = self.rng
        op = rng.randrange(8)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:  # flip bits
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert interesting bytes
            data[pos:pos] = rng.choice(INTERESTING_BYTES) * rng.choice((1, 1, 4, 64))
        elif op == 2 and data:  # delete a run
            del data[pos:pos + rng.randrange(1, 16)]
        elif op == 3:  # truncate
            del data[pos:]
        elif op == 4 and data:  # duplicate a chunk
            start = rng.randrange(len(data))
            data[pos:pos] = data[start:start + rng.randrange(1, 64)]
        elif op == 5:  # random bytes
            data[pos:pos] = rng.randbytes(rng.randrange(1, 32))
        elif op == 6 and data:  # overwrite a byte
            data[rng.randrange(len(data))] = rng.randrange(256)
        else:  # numbers that break length fields
            data[pos:pos] = struct.pack(">I", rng.choice((0, 1, 0xFFFF, 0xFFFFFFFF, len(data))))

    # ---- JSON -------------------------------------------------------------------------------
    def json_value(self, seed: Any, depth: int = 0) -> Any:
        rng = self.rng
        if depth > 6 or rng.random() < 0.15:
            return rng.choice(INTERESTING_JSON)
        if isinstance(seed, dict):
            out = {k: (self.json_value(v, depth + 1) if rng.random() < 0.3 else v) for k, v in seed.items()}
            if out and rng.random() < 0.2:
                del out[rng.choice(list(out))]
            if rng.random() < 0.2:
                out[rng.choice(("type", "state", "mode", "payload", "id", "result", "\u202e", "x" * 50))] = \
                    rng.choice(INTERESTING_JSON)
            return out
        if isinstance(seed, list):
            items = [self.json_value(v, depth + 1) for v in seed]
            return items * rng.choice((1, 1, 2, 50)) if rng.random() < 0.3 else items
        return seed

    def message(self) -> str | bytes:
        """A device text frame: mutated JSON, or mutated bytes of it."""
        seed = self.rng.choice(MESSAGE_SEEDS)
        if self.rng.random() < 0.6:
            return json.dumps(self.json_value(seed), ensure_ascii=self.rng.random() < 0.5)
        return self.bytes_(json.dumps(seed).encode())

    def activate_body(self) -> bytes:
        seed = self.rng.choice(ACTIVATE_SEEDS)
        if self.rng.random() < 0.5:
            return json.dumps(self.json_value(seed)).encode()
        return self.bytes_(json.dumps(seed).encode())

    def ota_body(self) -> bytes:
        if self.rng.random() < 0.5:
            return json.dumps(self.json_value(FIRMWARE_BODY)).encode()
        return self.bytes_(json.dumps(FIRMWARE_BODY).encode(), max_len=16384)

    def header_value(self, seed: str) -> str:
        raw = self.bytes_(seed.encode(), max_len=200) if self.rng.random() < 0.7 else self.rng.randbytes(20)
        # HTTP header values are latin-1 text without CR/LF (clients refuse to send anything else)
        return raw.decode("latin-1").replace("\r", " ").replace("\n", " ")

    def headers(self) -> dict[str, str]:
        base = dict(FIRMWARE_HEADERS) | {"Authorization": "Bearer " + "t" * 43, "Protocol-Version": "1"}
        out: dict[str, str] = {}
        for name, value in base.items():
            if self.rng.random() < 0.1:
                continue
            out[name] = self.header_value(value) if self.rng.random() < 0.4 else value
        if self.rng.random() < 0.2:
            out[self.rng.choice(HEADER_NAMES)] = self.header_value("x")
        return out

    def frame(self, version: int) -> bytes:
        payload = self.rng.randbytes(self.rng.choice((0, 1, 3, 40, 120, 400)))
        if version == 1:
            seed = payload
        elif version == 2:
            seed = struct.pack(">HHIII", 2, 0, 0, self.rng.randrange(2**32), len(payload)) + payload
        else:
            seed = struct.pack(">BBH", 0, 0, len(payload)) + payload
        return self.bytes_(seed, max_len=70_000) if self.rng.random() < 0.7 else seed

    def mcp_payload(self) -> Any:
        seed = self.rng.choice([m["payload"] for m in MESSAGE_SEEDS if m["type"] == "mcp"])
        return self.json_value(seed)
