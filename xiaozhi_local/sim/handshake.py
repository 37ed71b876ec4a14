"""The pure half of opening a device channel (protocol.md §1.8, §2.1, §2.2).

:class:`ChannelConfig` says where and as whom to connect and builds the handshake (headers,
or the browser-style query parameters). :func:`accept_server_hello` checks the server hello
the way ``WebsocketProtocol::ParseServerHello`` reads it and returns the downlink
parameters, or raises :class:`SimulatorError` describing what stock firmware would do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from xiaozhi_local.errors import ProtocolError, SimulatorError
from xiaozhi_local.protocol.audio_params import (
    SUPPORTED_FRAME_DURATIONS_MS,
    SUPPORTED_SAMPLE_RATES,
    AudioParams,
)

__all__ = ["ChannelConfig", "ServerHello", "accept_server_hello"]


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """Where and as whom to connect (§2.1)."""

    url: str
    device_id: str
    client_id: str
    token: str = ""
    protocol_version: int = 1
    query_auth: bool = False
    connect_timeout_s: float = 10.0
    hello_timeout_s: float = 10.0

    def authorization(self) -> str | None:
        """The ``Authorization`` value: ``Bearer <token>`` unless the token has a space (§1.8)."""
        if not self.token:
            return None
        return self.token if " " in self.token else f"Bearer {self.token}"

    def connect_target(self) -> tuple[str, dict[str, str]]:
        """The URL to open and the extra handshake headers."""
        if self.query_auth:
            parts = urlsplit(self.url)
            params = {"device-id": self.device_id, "client-id": self.client_id}
            if (auth := self.authorization()) is not None:
                params["authorization"] = auth
            query = "&".join(q for q in (parts.query, urlencode(params)) if q)
            return urlunsplit(parts._replace(query=query)), {}
        headers = {
            "Protocol-Version": str(self.protocol_version),
            "Device-Id": self.device_id,
            "Client-Id": self.client_id,
        }
        if (auth := self.authorization()) is not None:
            headers = {"Authorization": auth, **headers}
        return self.url, headers


@dataclass(frozen=True, slots=True)
class ServerHello:
    """The accepted server hello (§2.2): ``audio_params`` configure the downlink decoder."""

    session_id: str
    audio_params: AudioParams
    raw: dict[str, Any]


def _is_number(value: object) -> bool:
    """What ``cJSON_IsNumber`` accepts (a JSON ``true`` is not a number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def accept_server_hello(message: dict[str, Any]) -> ServerHello:
    """Check a server hello the way ``ParseServerHello`` reads it (§2.2)."""
    transport = message.get("transport")
    if transport is None:
        raise SimulatorError("the server hello has no 'transport'; stock firmware dereferences a null pointer (§2.2)")
    if transport != "websocket":
        raise SimulatorError(
            f"the server hello says transport={transport!r}, not 'websocket'; stock firmware ignores it and "
            "times out after 10 s (§2.2)"
        )
    session_id = message.get("session_id")
    raw_params = message.get("audio_params")
    # The firmware reads only numeric sample_rate / frame_duration; absent (or not numbers) → 24000 / 60.
    raw = raw_params if isinstance(raw_params, Mapping) else {}
    numeric = {k: raw[k] for k in ("sample_rate", "frame_duration") if _is_number(raw.get(k))}
    try:
        params = AudioParams.from_server_hello(numeric)
    except ProtocolError as exc:
        raise SimulatorError(f"the server hello's audio_params are unusable: {exc} (§2.2)") from None
    if params.sample_rate not in SUPPORTED_SAMPLE_RATES:
        raise SimulatorError(f"the server hello's sample_rate {params.sample_rate} is not an Opus rate (§2.2)")
    if params.frame_duration not in SUPPORTED_FRAME_DURATIONS_MS:
        raise SimulatorError(f"the server hello's frame_duration {params.frame_duration} ms is not an Opus one (§2.2)")
    return ServerHello(session_id=session_id if isinstance(session_id, str) else "", audio_params=params, raw=message)
