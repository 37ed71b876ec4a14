"""Downlink pacing schedule, driven by FakeClock (protocol.md §2.4, §8 item 7)."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from xiaozhi_local.audio.clock import Clock, FakeClock, MonotonicClock
from xiaozhi_local.audio.pacer import Pacer

FRAME = 0.060
CAP = 5 * FRAME
TOL = 1e-9  # float rounding only: zero frames of tolerance


def send(pacer: Pacer, clock: FakeClock, count: int) -> list[tuple[float, float]]:
    """Send `count` frames that are all ready now; return (send time, lead after send)."""
    out = []
    for _ in range(count):
        clock.advance(pacer.delay_for_next(clock.now()))
        pacer.sent(clock.now())
        out.append((clock.now(), pacer.lead(clock.now())))
    return out


def test_fifty_instant_frames_prebuffer_then_real_time() -> None:
    clock = FakeClock(100.0)
    pacer = Pacer(frame_ms=60, prebuffer=5)
    log = send(pacer, clock, 50)
    times = [t - 100.0 for t, _ in log]
    assert times[:5] == [0.0] * 5
    for k in range(5, 50):
        assert times[k] == pytest.approx((k - 4) * FRAME, abs=1e-9)
    for a, b in itertools.pairwise(times[5:]):
        assert b - a == pytest.approx(FRAME, abs=1e-9)
    assert max(lead for _, lead in log) <= CAP + TOL
    assert log[4][1] == pytest.approx(CAP)
    assert pacer.frames_sent == 50
    assert pacer.rebases == 1
    # Everything sent is played by 100 + 50 x 60 ms; tts stop 2 frames after that.
    assert pacer.drain_time(clock.now()) == pytest.approx(50 * FRAME + 2 * FRAME - times[-1])
    assert pacer.drain_time(clock.now()) == pytest.approx(0.42)


def test_gap_rebases_without_burst() -> None:
    clock = FakeClock()
    pacer = Pacer()
    send(pacer, clock, 50)
    last = clock.now()
    clock.advance(2.0)  # TTS stalls for 2 s: the device ran dry 300 ms after `last`
    assert pacer.lead(clock.now()) == 0.0
    assert pacer.delay_for_next(clock.now()) == 0.0
    start = clock.now()
    log = send(pacer, clock, 10)
    times = [t - start for t, _ in log]
    assert times[:5] == [0.0] * 5  # a fresh pre-buffer, not a catch-up burst
    for k in range(5, 10):
        assert times[k] == pytest.approx((k - 4) * FRAME, abs=1e-9)
    assert max(lead for _, lead in log) <= CAP + TOL
    assert pacer.rebases == 2
    assert start - last == pytest.approx(2.0)


def test_short_stall_tops_up_to_the_cap_only() -> None:
    clock = FakeClock()
    pacer = Pacer()
    send(pacer, clock, 20)
    clock.advance(0.2)  # producer late by 200 ms; device still holds 100 ms
    assert pacer.lead(clock.now()) == pytest.approx(0.1)
    log = send(pacer, clock, 10)
    immediate = sum(1 for t, _ in log if t == pytest.approx(log[0][0]))
    assert immediate == 3  # 100 ms left + 3 x 60 ms = 280 ms; a 4th would exceed 300 ms
    assert max(lead for _, lead in log) <= CAP + TOL
    assert pacer.rebases == 1


def test_random_producer_never_exceeds_cap_and_never_waits_needlessly() -> None:
    rng = random.Random(42)
    clock = FakeClock()
    pacer = Pacer(frame_ms=20, prebuffer=3)
    cap = 3 * 0.020
    for _ in range(3000):
        if rng.random() < 0.1:
            clock.advance(rng.uniform(0, 0.5))  # producer stalls now and then
        before = clock.now()
        delay = pacer.delay_for_next(before)
        if delay > 0:
            # Waiting is only ever required while the device already holds >= cap - 1 frame.
            assert pacer.lead(before) > cap - 0.020 - TOL
        clock.advance(delay + rng.choice([0.0, 0.0, 0.003]))  # event-loop jitter
        pacer.sent(clock.now())
        assert pacer.lead(clock.now()) <= cap + TOL


def test_lead_models_a_device_queue_of_at_most_prebuffer_packets() -> None:
    clock = FakeClock()
    pacer = Pacer()
    sends = [t for t, _ in send(pacer, clock, 40)]
    # Device: plays back-to-back from the first arrival; count packets not yet finished.
    for now in [i * 0.01 for i in range(300)]:
        received = sum(1 for t in sends if t <= now)
        played = min(received, int(now / FRAME))
        assert received - played <= 5


def test_reset_and_empty_state() -> None:
    clock = FakeClock()
    pacer = Pacer()
    assert pacer.delay_for_next(0.0) == 0.0
    assert pacer.lead(0.0) == 0.0
    assert pacer.drain_time(0.0) == 0.0
    assert pacer.play_end() is None
    send(pacer, clock, 12)
    assert pacer.delay_for_next(clock.now()) > 0
    pacer.reset()
    assert pacer.frames_sent == 0
    assert pacer.delay_for_next(clock.now()) == 0.0
    assert pacer.lead(clock.now()) == 0.0
    assert pacer.drain_time(clock.now()) == 0.0
    log = send(pacer, clock, 6)
    assert [t for t, _ in log[:5]] == [log[0][0]] * 5


def test_drain_time_counts_down() -> None:
    pacer = Pacer(frame_ms=60, prebuffer=5, drain_margin_frames=2)
    for _ in range(3):
        pacer.sent(10.0)
    assert pacer.lead(10.0) == pytest.approx(0.18)
    assert pacer.drain_time(10.0) == pytest.approx(0.30)
    assert pacer.drain_time(10.25) == pytest.approx(0.05)
    assert pacer.drain_time(11.0) == 0.0
    assert Pacer(drain_margin_frames=0).drain_time(0.0) == 0.0


def test_validation() -> None:
    with pytest.raises(ValueError):
        Pacer(frame_ms=0)
    with pytest.raises(ValueError):
        Pacer(prebuffer=0)
    with pytest.raises(ValueError):
        Pacer(drain_margin_frames=-1)


async def _paced_sender(clock: Clock, pacer: Pacer, frames: int) -> list[float]:
    """The intended I/O loop: sleep on the injected clock, send, record."""
    sent_at = []
    for _ in range(frames):
        await clock.sleep(pacer.delay_for_next(clock.now()))
        sent_at.append(clock.now())
        pacer.sent(clock.now())
    await clock.sleep(pacer.drain_time(clock.now()))
    sent_at.append(clock.now())  # when `tts stop` would go
    return sent_at


def test_async_loop_with_fake_clock() -> None:
    clock = FakeClock()
    times = asyncio.run(_paced_sender(clock, Pacer(), 20))
    assert times[:5] == [0.0] * 5
    assert times[19] == pytest.approx(15 * FRAME)
    assert times[20] == pytest.approx(20 * FRAME + 2 * FRAME)  # tts stop
    assert sum(clock.sleeps) == pytest.approx(clock.now())


def test_async_loop_with_monotonic_clock_is_real_time() -> None:
    clock = MonotonicClock()
    assert isinstance(clock, Clock)
    times = asyncio.run(_paced_sender(clock, Pacer(frame_ms=10, prebuffer=2), 6))
    elapsed = times[-1] - times[0]
    # Sleeps never return early, so real pacing shows as a lower bound; no upper bound is
    # asserted (speed on a busy machine is bench work, not a test).
    assert elapsed >= 0.075  # 6 x 10 ms played + 20 ms margin, minus scheduling slack
