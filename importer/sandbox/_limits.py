"""Rate limits of three kinds, since the reference documents none: a sliding one-second window,
a token bucket with a burst, and a quota per period (a fixed window, e.g. per minute)."""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol


class Limit(Protocol):
    def wait(self, key: str, now: float) -> float:
        """0 and the request counted when it may go now; else seconds until it may."""
        ...


class SlidingWindow:
    """At most ``rate`` requests in any one-second window, per key."""

    def __init__(self, rate: float) -> None:
        self.limit = max(1, math.floor(rate))
        self._seen: dict[str, deque[float]] = {}

    def wait(self, key: str, now: float) -> float:
        seen = self._seen.setdefault(key, deque())
        while seen and now - seen[0] >= 1.0:
            seen.popleft()
        if len(seen) < self.limit:
            seen.append(now)
            return 0.0
        return 1.0 - (now - seen[0])


class TokenBucket:
    """``burst`` requests at once, then ``rate`` a second (the bucket refills continuously)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = max(rate, 0.001)
        self.capacity = float(max(1, burst))
        self._state: dict[str, tuple[float, float]] = {}

    def wait(self, key: str, now: float) -> float:
        tokens, at = self._state.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._state[key] = (tokens - 1.0, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


class Quota:
    """At most ``count`` requests per fixed period (the first request of a key opens its first
    period): the whole quota may go at once, then nothing until the next period."""

    def __init__(self, count: float, period: float) -> None:
        self.count = max(1, math.floor(count))
        self.period = max(period, 0.001)
        self._state: dict[str, tuple[float, int]] = {}

    def wait(self, key: str, now: float) -> float:
        opened, used = self._state.get(key, (now, 0))
        if now - opened >= self.period:
            opened += self.period * math.floor((now - opened) / self.period)
            used = 0
        if used < self.count:
            self._state[key] = (opened, used + 1)
            return 0.0
        self._state[key] = (opened, used)
        return opened + self.period - now


def make_limit(kind: str, rate: float, burst: int, period: float) -> Limit | None:
    """The limit a sandbox's knobs describe; None when ``rate`` is 0 (no limit)."""
    if rate <= 0:
        return None
    if kind == "bucket":
        return TokenBucket(rate, burst or max(1, math.ceil(2 * rate)))
    if kind == "quota":
        return Quota(rate * period, period)
    return SlidingWindow(rate)
