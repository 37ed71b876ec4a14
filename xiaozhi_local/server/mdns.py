"""Announce this server on the LAN with mDNS / DNS-SD, and find such servers (protocol.md §1.1, §1.5).

Stock firmware never browses mDNS: it takes its OTA URL from NVS or the Wi-Fi portal (§1.1). The
announcement is for people and tools (the simulator, a phone, ``xiaozhi`` clients) that need the
URL to type in, so the URLs in it are the device-reachable ones of §1.5.

Service type ``_xiaozhi._tcp.local.``; instance ``xiaozhi-local on <hostname>`` (renamed by
zeroconf on a name conflict); port = ``server.http_port``; TXT ``ota`` (OTA URL), ``ws``
(WebSocket URL), ``version`` (xiaozhi-local version), ``path`` (``/xiaozhi/ota/``). IPv4 only.
``server.mdns_interfaces`` lists interface addresses (or names, resolved here); empty = all.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from typing import Final

import ifaddr
from zeroconf import InterfaceChoice, IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from ..errors import XiaozhiError
from .context import ServerContext
from .lan import lan_addresses

__all__ = ["OTA_PATH", "SERVICE_TYPE", "MdnsAdvertiser"]

log = logging.getLogger(__name__)

SERVICE_TYPE: Final = "_xiaozhi._tcp.local."
OTA_PATH: Final = "/xiaozhi/ota/"
_MAX_LABEL: Final = 63  # bytes in one DNS label (RFC 6763 §4.1.1)


def _interfaces(entries: list[str] | None) -> InterfaceChoice | list[str]:
    """Zeroconf's ``interfaces``: IPv4 addresses; names like ``eth0`` become their addresses."""
    if not entries:
        return InterfaceChoice.All
    out: list[str] = []
    adapters = None
    for entry in entries:
        try:
            ip = ipaddress.ip_address(entry)
        except ValueError:
            adapters = adapters if adapters is not None else ifaddr.get_adapters()
            found = [ip.ip for a in adapters if entry in (a.name, a.nice_name)
                     for ip in a.ips if isinstance(ip.ip, str)]
            if not found:
                log.warning("mDNS: interface %r has no IPv4 address; skipped", entry)
            out.extend(found)
            continue
        if ip.version != 4:
            log.warning("mDNS: %s is not IPv4 (mDNS here is IPv4 only); skipped", entry)
            continue
        out.append(str(ip))
    if not out:
        raise XiaozhiError(f"none of server.mdns_interfaces {entries!r} is an IPv4 address or an interface "
                           "with one; fix the list or leave it empty for all interfaces")
    return list(dict.fromkeys(out))


async def _ipv4_of(host: str) -> list[str]:
    """IPv4 addresses to put in the A record for the advertised host."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if ip.version == 4:
            return [host]
        log.warning("mDNS: advertised host %s is IPv6; announcing the LAN IPv4 addresses instead", host)
        return [a.ip for a in lan_addresses()]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=socket.AF_INET)
    except OSError as exc:
        log.warning("mDNS: cannot resolve advertised host %r (%s); announcing the LAN addresses", host, exc)
        return [a.ip for a in lan_addresses()]
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _label(text: str) -> str:
    """A DNS host label: lowercase letters, digits and ``-``."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "host"


def _instance_name(hostname: str) -> str:
    name = f"xiaozhi-local on {hostname}"
    while len(name.encode("utf-8")) > _MAX_LABEL:
        name = name[:-1]
    return name.rstrip()


class MdnsAdvertiser:
    """Registers one ``_xiaozhi._tcp`` service while the server runs."""

    def __init__(self) -> None:
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None

    @property
    def name(self) -> str | None:
        """The registered service name (after any conflict renaming), or None when stopped."""
        return self._info.name if self._info is not None else None

    async def start(self, ctx: ServerContext) -> None:
        """Announce the server described by ``ctx`` (§1.5 URLs).

        Raises :class:`XiaozhiError` for unusable settings (``mdns_interfaces``, an advertised
        host without an IPv4 address); socket trouble surfaces as ``OSError``.
        """
        if self._zc is not None:
            raise RuntimeError("MdnsAdvertiser already started")
        settings = ctx.settings
        endpoints = ctx.endpoints()
        addresses = await _ipv4_of(ctx.advertise_host)
        if not addresses:
            raise XiaozhiError(f"mDNS: no IPv4 address for advertised host {ctx.advertise_host!r}; "
                               "set [server] advertise_host to this machine's LAN address")
        hostname = socket.gethostname().split(".")[0] or "host"
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{_instance_name(hostname)}.{SERVICE_TYPE}",
            port=settings.http_port,
            properties={"ota": endpoints.ota_url, "ws": endpoints.websocket_url,
                        "version": ctx.version, "path": OTA_PATH},
            # Our own host name, so we never clash with the system's (avahi) record for <hostname>.local.
            server=f"xiaozhi-local-{_label(hostname)}.local.",
            parsed_addresses=addresses,
        )
        zc = AsyncZeroconf(interfaces=_interfaces(settings.mdns_interfaces), ip_version=IPVersion.V4Only)
        try:
            await (await zc.async_register_service(info, allow_name_change=True))
        except BaseException:
            await zc.async_close()
            raise
        self._zc, self._info = zc, info
        log.info("mDNS: announcing %r at %s (OTA %s)", info.name, ", ".join(addresses), endpoints.ota_url)

    async def stop(self) -> None:
        """Withdraw the service (goodbye packets) and close the sockets. Safe to call twice."""
        zc, info = self._zc, self._info
        self._zc = self._info = None
        if zc is None or info is None:
            return
        try:
            await (await zc.async_unregister_service(info))
        finally:
            await zc.async_close()
        log.info("mDNS: withdrew %r", info.name)
