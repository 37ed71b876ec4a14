"""State shared by the server's parts (HTTP, WebSocket, mDNS): settings, addresses, sessions."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil

from .. import __version__
from ..config import LimitsSettings, ServerSettings
from ..pipeline.timing import TurnLog
from .lan import Endpoints, detect_advertise_host, host_from_header

log = logging.getLogger(__name__)

WILDCARDS = ("", "0.0.0.0", "::")
OPEN_MODE_HEALTH_WARNING = "pairing is off (open mode): any device on the network is admitted"


class LiveSession(Protocol):
    """What the rest of the server may know about a running device session."""

    session_id: str
    device_id: str
    address: str
    started: float

    async def shutdown(self, code: int, reason: str) -> None: ...


def process_stats() -> dict[str, float]:
    """This server process's memory and CPU time (``xiaozhi bench`` samples them)."""
    proc = psutil.Process()
    with proc.oneshot():
        cpu = proc.cpu_times()
        return {"rss_bytes": proc.memory_info().rss, "cpu_s": round(cpu.user + cpu.system, 3),
                "threads": proc.num_threads()}


@dataclass
class ServerContext:
    settings: ServerSettings
    started: float = field(default_factory=time.time)
    version: str = __version__
    sessions: dict[str, LiveSession] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)  # role -> model id, for /health
    conversation: str = ""  # what fills the turns ("echo", "pipeline"), for /health
    detected_host: str | None = None
    turns: TurnLog = field(default_factory=TurnLog)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    pairing_mode: str = "paired"  # "paired" | "open" (set by the server from its DevicePairing)

    def __post_init__(self) -> None:
        if not self.settings.advertise_host and self.settings.host in WILDCARDS:
            self.detected_host = detect_advertise_host()

    @property
    def advertise_host(self) -> str:
        """The host given to devices that did not tell us how they reached us.

        The configured ``advertise_host``; else the listening address when it is a specific
        one; else a detected LAN address; 127.0.0.1 only when there is nothing else.
        """
        if self.settings.advertise_host:
            return self.settings.advertise_host
        if self.settings.host not in WILDCARDS:
            return self.settings.host
        return self.detected_host or "127.0.0.1"

    def endpoints(self, host: str | None = None) -> Endpoints:
        return Endpoints(host or self.advertise_host, self.settings.http_port, self.settings.ws_port)

    def endpoints_for_request(self, host_header: str | None) -> Endpoints:
        """URLs for an OTA reply: configured host, else the host the device used, else detected."""
        if self.settings.advertise_host:
            return self.endpoints()
        return self.endpoints(host_from_header(host_header))

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": self.version,
            "uptime_s": round(time.time() - self.started, 1),
            "conversation": self.conversation,
            "models": dict(self.models),
            "sessions": [
                {"session_id": s.session_id, "device_id": s.device_id, "address": s.address,
                 "age_s": round(time.time() - s.started, 1)}
                for s in self.sessions.values()
            ],
            "process": process_stats(),
            "ota_url": self.endpoints().ota_url,
            "websocket_url": self.endpoints().websocket_url,
            "pairing": self.pairing_health(),
        }

    def pairing_health(self) -> dict[str, str]:
        if self.pairing_mode == "open":
            return {"mode": "open", "warning": OPEN_MODE_HEALTH_WARNING}
        return {"mode": self.pairing_mode}
