"""mDNS discovery on loopback only (interfaces=["127.0.0.1"]).

The advertised service is registered here by the test, standing in for the real server's
mDNS announcer (written separately). Each test run uses its own service type (same code path
as ``_xiaozhi._tcp.local.``) so that concurrent test runs on this host cannot see each other.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator

import pytest
from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from xiaozhi_local.errors import SimulatorError
from xiaozhi_local.sim.discover import SERVICE_TYPE, discover, discover_server, ota_url_from

LOOPBACK = ["127.0.0.1"]
TEST_TYPE = f"_xz{secrets.token_hex(4)}._tcp.local."


@pytest.fixture
async def advertised() -> AsyncIterator[ServiceInfo]:
    info = ServiceInfo(
        TEST_TYPE,
        f"xiaozhi-test.{TEST_TYPE}",
        addresses=[socket.inet_aton("127.0.0.1")],
        port=8003,
        properties={"path": "/xiaozhi/ota/", "version": "0.1.0"},
        server="xiaozhi-test.local.",
    )
    azc = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
    await azc.async_register_service(info)
    try:
        yield info
    finally:
        await azc.async_unregister_service(info)
        await azc.async_close()


async def test_discovers_the_advertised_server(advertised: ServiceInfo) -> None:
    found = await discover_server(5.0, interfaces=LOOPBACK, service_type=TEST_TYPE)
    assert found.name == advertised.name
    assert (found.host, found.port) == ("127.0.0.1", 8003)
    assert found.ota_url == "http://127.0.0.1:8003/xiaozhi/ota/"
    assert found.properties["version"] == "0.1.0"


async def test_nothing_found_is_a_clear_error() -> None:
    with pytest.raises(SimulatorError, match="no xiaozhi server answered"):
        await discover_server(0.5, interfaces=LOOPBACK, service_type="_xiaozhi-none._tcp.local.")
    assert await discover(0.3, interfaces=LOOPBACK, service_type="_xiaozhi-none._tcp.local.") == []


def test_ota_url_from_txt_record() -> None:
    assert SERVICE_TYPE == "_xiaozhi._tcp.local."
    assert ota_url_from("10.0.0.5", 8003, {}) == "http://10.0.0.5:8003/xiaozhi/ota/"
    assert ota_url_from("10.0.0.5", 8003, {"path": "ota"}) == "http://10.0.0.5:8003/ota"
    assert ota_url_from("10.0.0.5", 80, {"ota_url": "https://x.lan/xiaozhi/ota/"}) == "https://x.lan/xiaozhi/ota/"
    assert ota_url_from("fe80::1", 8003, {"url": "not-a-url"}) == "http://[fe80::1]:8003/xiaozhi/ota/"
    # what `xiaozhi serve` announces (xiaozhi_local/server/mdns.py): ota, ws, version, path
    txt = {"ota": "http://192.168.1.9:8003/xiaozhi/ota/", "ws": "ws://192.168.1.9:8000/xiaozhi/v1/", "path": "/x/"}
    assert ota_url_from("192.168.1.9", 8003, txt) == "http://192.168.1.9:8003/xiaozhi/ota/"
