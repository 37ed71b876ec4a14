"""FakeClock and MonotonicClock behaviour."""

from __future__ import annotations

import asyncio

import pytest

from xiaozhi_local.audio.clock import Clock, FakeClock, MonotonicClock


def test_fake_clock_advances_only_when_told() -> None:
    clock = FakeClock(5.0)
    assert clock.now() == 5.0
    clock.advance(0.5)
    assert clock.now() == 5.5
    clock.set(7.0)
    assert clock.now() == 7.0
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(6.0)


def test_fake_sleep_is_instant_and_recorded() -> None:
    clock = FakeClock()

    async def main() -> None:
        await clock.sleep(10.0)
        await clock.sleep(-3.0)  # negative counts as zero

    asyncio.run(main())
    assert clock.now() == 10.0
    assert clock.sleeps == [10.0, 0.0]


def test_fake_sleep_yields_to_other_tasks() -> None:
    clock = FakeClock()
    order: list[str] = []

    async def worker(name: str) -> None:
        for _ in range(2):
            order.append(name)
            await clock.sleep(0.0)

    async def main() -> None:
        await asyncio.gather(worker("a"), worker("b"))

    asyncio.run(main())
    assert order == ["a", "b", "a", "b"]


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(FakeClock(), Clock)
    assert isinstance(MonotonicClock(), Clock)
    real = MonotonicClock()
    t0 = real.now()
    asyncio.run(real.sleep(0.01))
    assert real.now() - t0 >= 0.009
