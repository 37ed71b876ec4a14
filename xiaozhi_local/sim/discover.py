"""Find a xiaozhi-local server on the LAN by mDNS/DNS-SD (``_xiaozhi._tcp.local.``).

Stock firmware does not do this (it is told an OTA URL, §1.1); it is a convenience for
``xiaozhi device simulate --discover``. The OTA URL is taken from the service's TXT record,
first match wins:

* ``ota_url``, ``ota`` or ``url``: a full ``http(s)://`` URL, used as is;
* otherwise ``http://<address>:<port><path>`` with ``path`` (or ``ota_path``) from the TXT
  record, default ``/xiaozhi/ota/`` (the conventional path, §1.1).

``interfaces`` is passed to zeroconf; tests use ``["127.0.0.1"]`` (IPv4 only).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from xiaozhi_local.errors import SimulatorError

__all__ = ["DEFAULT_OTA_PATH", "SERVICE_TYPE", "DiscoveredServer", "discover", "discover_server", "ota_url_from"]

SERVICE_TYPE: Final = "_xiaozhi._tcp.local."
DEFAULT_OTA_PATH: Final = "/xiaozhi/ota/"
_URL_KEYS: Final = ("ota_url", "ota", "url")
_PATH_KEYS: Final = ("path", "ota_path")


@dataclass(frozen=True, slots=True)
class DiscoveredServer:
    """One resolved service instance."""

    name: str
    host: str
    port: int
    ota_url: str
    properties: dict[str, str]


def ota_url_from(host: str, port: int, properties: Mapping[str, str]) -> str:
    """The OTA URL a TXT record points at (see the module docstring). Pure."""
    for key in _URL_KEYS:
        value = properties.get(key, "").strip()
        if value.startswith(("http://", "https://")):
            return value
    path = next((properties[k].strip() for k in _PATH_KEYS if properties.get(k, "").strip()), DEFAULT_OTA_PATH)
    if not path.startswith("/"):
        path = "/" + path
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def _text_properties(raw: Mapping[bytes, bytes | None]) -> dict[str, str]:
    props: dict[str, str] = {}
    for key, value in raw.items():
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        props[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else ""
    return props


async def _resolve(zc: Zeroconf, service_type: str, name: str, timeout_s: float) -> DiscoveredServer | None:
    info = AsyncServiceInfo(service_type, name)
    if not await info.async_request(zc, int(timeout_s * 1000)):
        return None
    addresses = info.parsed_addresses(IPVersion.V4Only) or info.parsed_addresses()
    host = addresses[0] if addresses else (info.server or "").rstrip(".")
    if not host or info.port is None:
        return None
    props = _text_properties(info.properties)
    return DiscoveredServer(name=name, host=host, port=info.port, ota_url=ota_url_from(host, info.port, props),
                            properties=props)  # fmt: skip


async def discover(
    timeout_s: float = 3.0,
    *,
    interfaces: Sequence[str] | None = None,
    service_type: str = SERVICE_TYPE,
    first_only: bool = False,
) -> list[DiscoveredServer]:
    """Browse for ``timeout_s`` seconds (or until the first server when ``first_only``)."""
    loop = asyncio.get_running_loop()
    names: asyncio.Queue[str] = asyncio.Queue()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Removed:
            loop.call_soon_threadsafe(names.put_nowait, name)

    kwargs: dict[str, Any] = {"interfaces": list(interfaces)} if interfaces is not None else {}
    if interfaces is not None:
        kwargs["ip_version"] = IPVersion.V4Only
    azc = AsyncZeroconf(**kwargs)
    browser = AsyncServiceBrowser(azc.zeroconf, service_type, handlers=[on_change])
    found: dict[str, DiscoveredServer] = {}
    deadline = loop.time() + timeout_s
    try:
        while (left := deadline - loop.time()) > 0:
            try:
                name = await asyncio.wait_for(names.get(), timeout=left)
            except TimeoutError:
                break
            if name in found:
                continue
            server = await _resolve(azc.zeroconf, service_type, name, max(0.5, min(left, 3.0)))
            if server is not None:
                found[name] = server
                if first_only:
                    break
    finally:
        with contextlib.suppress(Exception):
            await browser.async_cancel()
        await azc.async_close()
    return list(found.values())


async def discover_server(
    timeout_s: float = 3.0, *, interfaces: Sequence[str] | None = None, service_type: str = SERVICE_TYPE
) -> DiscoveredServer:
    """The first server that answers, or SimulatorError after ``timeout_s``."""
    servers = await discover(timeout_s, interfaces=interfaces, service_type=service_type, first_only=True)
    if not servers:
        raise SimulatorError(
            f"no xiaozhi server answered on mDNS ({service_type}) within {timeout_s:g} s; is `xiaozhi serve` "
            "running on this network with mDNS enabled? Otherwise pass --server http://<host>:8003/xiaozhi/ota/"
        )
    return servers[0]
