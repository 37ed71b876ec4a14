"""Which address devices should use to reach this box (protocol.md §1.5).

Never a guess through the internet (xinnan opens a UDP socket towards 8.8.8.8, which offline
falls back to 127.0.0.1, useless to a device). Order: the configured ``advertise_host``; else,
for an OTA reply, the host the device itself used to reach us (it worked, so it is reachable
— this is the only way a loopback address is ever advertised: to a loopback client); else the
first private IPv4 address of a real interface.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

import ifaddr

log = logging.getLogger(__name__)

# Interfaces that are not the LAN a device is on.
_VIRTUAL_PREFIXES = ("lo", "docker", "br-", "veth", "virbr", "vmnet", "vboxnet", "tun", "tap", "wg", "zt", "tailscale")


@dataclass(frozen=True)
class Address:
    ip: str
    interface: str


def lan_addresses() -> list[Address]:
    """IPv4 addresses of real interfaces, private ranges first."""
    found: list[tuple[int, Address]] = []
    for adapter in ifaddr.get_adapters():
        name = adapter.nice_name or adapter.name
        if any(name.startswith(prefix) for prefix in _VIRTUAL_PREFIXES):
            continue
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue  # IPv6 entries are tuples
            address = ipaddress.IPv4Address(ip.ip)
            if address.is_loopback or address.is_link_local or address.is_unspecified:
                continue
            found.append((0 if address.is_private else 1, Address(ip.ip, name)))
    return [a for _, a in sorted(found, key=lambda item: item[0])]


def detect_advertise_host() -> str | None:
    addresses = lan_addresses()
    return addresses[0].ip if addresses else None


def host_from_header(host_header: str | None) -> str | None:
    """The host part of an HTTP ``Host`` header (``[v6]:port``, ``name:port`` or ``name``)."""
    if not host_header:
        return None
    value = host_header.strip()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else None
    host = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    return host or None


def url_host(host: str) -> str:
    """A host ready for a URL (IPv6 literals get brackets)."""
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]"
    except ValueError:
        pass
    return host


@dataclass(frozen=True)
class Endpoints:
    """The URLs a device is given, for one advertised host."""

    host: str
    http_port: int
    ws_port: int

    @property
    def ota_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.http_port}/xiaozhi/ota/"

    @property
    def websocket_url(self) -> str:
        return f"ws://{url_host(self.host)}:{self.ws_port}/xiaozhi/v1/"


def is_loopback_address(address: str) -> bool:
    """True for a peer address on this host (127.0.0.0/8, ::1, IPv4-mapped loopback)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))
