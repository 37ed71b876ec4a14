"""The per-address rate limiter, with a fake clock: pure function calls, no waiting."""

from __future__ import annotations

import pytest

from xiaozhi_local.server.ratelimit import AddressLimits, RateLimiter, is_loopback


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_refill_at_the_configured_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6, clock)  # 6 per minute = one every 10 s
    assert [limiter.check("a") for _ in range(6)] == [0.0] * 6
    assert limiter.check("a") == pytest.approx(10.0)
    clock.t += 5
    assert limiter.check("a") == pytest.approx(5.0)
    clock.t += 5
    assert limiter.check("a") == 0.0
    assert limiter.check("a") == pytest.approx(10.0)
    assert limiter.check("b") == 0.0  # other addresses are independent
    clock.t += 3600
    assert [limiter.check("a") for _ in range(6)] == [0.0] * 6  # never more than the burst
    assert limiter.check("a") > 0


def test_memory_is_bounded() -> None:
    limiter = RateLimiter(1, FakeClock(), max_keys=100)
    for i in range(1000):
        limiter.check(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100


def test_bad_rate() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, FakeClock())


def test_address_limits_retry_after_and_log_once_a_minute() -> None:
    clock = FakeClock()
    limits = AddressLimits({"ota": 2}, exempt_loopback=True, clock=clock)
    assert limits.check("ota", "192.168.1.9") is None
    assert limits.check("ota", "192.168.1.9") is None
    first = limits.check("ota", "192.168.1.9")
    second = limits.check("ota", "192.168.1.9")
    assert first is not None and first.retry_after_s == 30 and first.log
    assert second is not None and not second.log  # one log line per address per minute
    clock.t += 61
    assert limits.check("ota", "192.168.1.9") is None
    assert limits.check("ota", "192.168.1.9") is None
    third = limits.check("ota", "192.168.1.9")
    assert third is not None and third.log
    assert limits.check("unknown-kind", "192.168.1.9") is None


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_is_exempt_only_when_asked(address: str) -> None:
    assert is_loopback(address)
    exempt = AddressLimits({"ota": 1}, exempt_loopback=True, clock=FakeClock())
    strict = AddressLimits({"ota": 1}, exempt_loopback=False, clock=FakeClock())
    assert all(exempt.check("ota", address) is None for _ in range(10))
    assert strict.check("ota", address) is None and strict.check("ota", address) is not None


@pytest.mark.parametrize("address", ["192.168.1.2", "::ffff:10.0.0.1", "fe80::1%eth0", "unknown", ""])
def test_not_loopback(address: str) -> None:
    assert not is_loopback(address)
