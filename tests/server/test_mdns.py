"""mDNS: the server announces, the simulator's client finds it; loopback only (127.0.0.1)."""

from __future__ import annotations

import pytest

from xiaozhi_local.config import ServerSettings
from xiaozhi_local.errors import XiaozhiError
from xiaozhi_local.server.context import ServerContext
from xiaozhi_local.server.mdns import MdnsAdvertiser
from xiaozhi_local.sim.discover import discover as sim_discover

LOOPBACK = ["127.0.0.1"]


async def discover(timeout: float, interfaces: list[str]) -> list:  # type: ignore[type-arg]
    return sorted(await sim_discover(timeout, interfaces=interfaces), key=lambda s: s.name)


def loopback_ctx() -> ServerContext:
    return ServerContext(ServerSettings(advertise_host="127.0.0.1", mdns_interfaces=LOOPBACK,
                                        http_port=18003, ws_port=18000))


async def test_announce_discover_and_withdraw() -> None:
    ctx = loopback_ctx()
    advertiser = MdnsAdvertiser()
    await advertiser.start(ctx)
    try:
        registered = advertiser.name
        assert registered is not None and registered.startswith("xiaozhi-local on ")
        found = await discover(1.5, LOOPBACK)
    finally:
        await advertiser.stop()
    assert len(found) == 1
    server = found[0]
    assert server.name == registered
    assert server.ota_url == "http://127.0.0.1:18003/xiaozhi/ota/"
    assert server.properties["ws"] == "ws://127.0.0.1:18000/xiaozhi/v1/"
    assert server.properties["version"] == ctx.version
    assert (server.host, server.port) == ("127.0.0.1", 18003)
    assert advertiser.name is None
    assert await discover(1.0, LOOPBACK) == []
    await advertiser.stop()  # idempotent


async def test_name_conflict_is_renamed() -> None:
    first, second = MdnsAdvertiser(), MdnsAdvertiser()
    await first.start(loopback_ctx())
    try:
        await second.start(loopback_ctx())
        try:
            assert first.name != second.name
            found = await discover(1.5, LOOPBACK)
            assert len(found) == 2
        finally:
            await second.stop()
    finally:
        await first.stop()


async def test_bad_interfaces_are_a_clear_error() -> None:
    ctx = ServerContext(ServerSettings(advertise_host="127.0.0.1", mdns_interfaces=["::1", "no-such-if0"]))
    with pytest.raises(XiaozhiError, match="mdns_interfaces"):
        await MdnsAdvertiser().start(ctx)


def test_interface_names_resolve_to_ipv4_addresses() -> None:
    from zeroconf import InterfaceChoice

    from xiaozhi_local.server.mdns import _interfaces

    assert _interfaces([]) is InterfaceChoice.All
    assert _interfaces(["lo", "127.0.0.1"]) == ["127.0.0.1"]  # a name becomes its address; no duplicates
