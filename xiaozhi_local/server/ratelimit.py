"""Per-source-address rate limits, pure: the clock is injected, nothing sleeps.

:class:`RateLimiter` is a token bucket per key (a client address): ``per_minute`` attempts in a
burst, refilled at ``per_minute`` per minute. :class:`AddressLimits` holds one bucket set per kind
of request (``"ota"``, ``"activate"``, ``"websocket"``), exempts loopback clients when asked,
and says when a refusal is worth a log line (the first per address per minute, so that a flood
cannot flood the log too). Memory is bounded: at most ``max_keys`` addresses are tracked; the
least recently seen one is dropped first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .lan import is_loopback_address as is_loopback

__all__ = ["AddressLimits", "Limit", "RateLimiter", "is_loopback"]

Clock = Callable[[], float]
MAX_KEYS: Final = 4096
LOG_EVERY_S: Final = 60.0


class RateLimiter:
    """A token bucket per key: :meth:`check` spends one token or says how long to wait."""

    def __init__(self, per_minute: int, clock: Clock = time.monotonic, max_keys: int = MAX_KEYS):
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def check(self, key: str) -> float:
        """0.0 when allowed (a token is spent); otherwise the seconds until the next token."""
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + max(0.0, now - at) * self.rate)
        if tokens >= 1.0:
            self._remember(key, tokens - 1.0, now)
            return 0.0
        self._remember(key, tokens, now)
        return (1.0 - tokens) / self.rate

    def _remember(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True, slots=True)
class Limit:
    """A refusal: how long the client should wait, and whether to log it."""

    retry_after_s: int
    log: bool


class AddressLimits:
    """One :class:`RateLimiter` per request kind, keyed by client address."""

    def __init__(self, per_minute: dict[str, int], *, exempt_loopback: bool = True, clock: Clock = time.monotonic,
                 max_keys: int = MAX_KEYS):
        self.clock = clock
        self.exempt_loopback = exempt_loopback
        self.limiters = {kind: RateLimiter(n, clock, max_keys) for kind, n in per_minute.items()}
        self._logged: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.max_keys = max_keys

    def exempt(self, address: str) -> bool:
        return self.exempt_loopback and is_loopback(address)

    def check(self, kind: str, address: str) -> Limit | None:
        """None when ``address`` may go on with a ``kind`` request; else a :class:`Limit`."""
        limiter = self.limiters.get(kind)
        if limiter is None or self.exempt(address):
            return None
        wait = limiter.check(address)
        if wait <= 0:
            return None
        return Limit(retry_after_s=max(1, math.ceil(wait)), log=self.worth_logging(kind, address))

    def worth_logging(self, kind: str, address: str) -> bool:
        """True at most once per :data:`LOG_EVERY_S` for each (kind, address)."""
        now = self.clock()
        key = (kind, address)
        last = self._logged.pop(key, None)
        if last is not None and now - last < LOG_EVERY_S:
            self._logged[key] = last
            return False
        self._logged[key] = now
        while len(self._logged) > self.max_keys:
            self._logged.popitem(last=False)
        return True
