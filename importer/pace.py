"""Pace: how fast requests go, found by probing, since no server says its limit.

Until the first 429 the importer probes as TCP avoids congestion: twenty-four requests in flight,
one more every round trip while answers come as fast as the fastest (fewer when they slow: more
connections on loopback only queue), up to ``--concurrency``. The first 429 says the limit is
near: nothing more is sent before its ``Retry-After``, and from then on one rate holds for every
worker, starting at 99% of what the server accepted over the last second (the limit, as
measured), growing by 0.5% a second up to 99.5% of that limit (past it only after 30 s without
a 429: limits change), and lowered the same way by each later 429. Requests are
spaced ``1 / rate`` apart (a leaky bucket the workers share), never faster than ``--rate``, and
the number in flight follows the measured latency times the rate (enough to keep the rate, no
more: on loopback more connections are slower, not faster).
After the first, only the request that met a 429 waits its ``Retry-After``; the others go on.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

#: Requests in flight when a run starts probing; the number grows by one every round trip (each
#: answer adds 1 / the number in flight), so a probe runs little past the limit it finds: what it
#: has in flight when the first 429 comes back is all that is refused.
INITIAL_WINDOW = 24
#: How much slower than twice the fastest an answer may be while the probe still grows the window.
QUEUE_SLACK = 0.002
#: After the first 429: growth per second, as a share of the rate.
GROWTH = 0.005
#: On a 429: the share of the measured accepted rate to go on at.
BACK_TO = 0.99
#: Growth stops at this share of the limit last measured, for this long after a 429.
HOLD_AT = 0.995
HOLD_FOR = 30.0


@dataclass
class Slot:
    """One request's turn: when it was sent, and (set by the caller) whether it was refused."""

    sent_at: float
    rate_limited: bool = False
    retry_after: float | None = None


class Pace:
    """The shared rate and in-flight window. Use ``async with pace.slot() as slot`` around each
    request, and set ``slot.rate_limited`` when the answer was a 429."""

    def __init__(self, *, ceiling: float | None = None, concurrency: int = 32) -> None:
        self.ceiling = ceiling
        self.cap = max(1, concurrency)
        self.rate = ceiling or 0.0  # no rate until the first 429 (or the ceiling's)
        self.probing = True  # slow start, until the first 429
        self.probe_window: float = INITIAL_WINDOW
        self.latency = 0.05  # seconds, an estimate updated from every answer
        self.fastest = float("inf")
        self.in_flight = 0
        self.rate_limited = 0
        self._next_at = 0.0
        self._lowered_at = 0.0
        self._answered: deque[float] = deque()
        #: What the server accepted over the second before its last 429.
        self.known_limit = float("inf")
        self._turn = asyncio.Condition()

    @property
    def window(self) -> int:
        """How many requests may be in flight: while probing, the probe's; then enough for the
        rate at the measured latency."""
        if self.probing:
            return max(1, min(self.cap, int(self.probe_window)))
        return max(1, min(self.cap, math.ceil(self.rate * self.latency * 1.5) + 1))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        async with self._turn:
            await self._turn.wait_for(lambda: self.in_flight < self.window)
            self.in_flight += 1
        try:
            now = time.monotonic()
            if self.rate > 0 or self._next_at > now:
                start = max(now, self._next_at)
                self._next_at = start + (1.0 / self.rate if self.rate > 0 else 0.0)
                if start > now:
                    await asyncio.sleep(start - now)
            slot = Slot(sent_at=time.monotonic())
            yield slot
            self._after(slot)
        finally:
            async with self._turn:
                self.in_flight -= 1
                # Wake as many as may go now, not every waiting worker.
                self._turn.notify(max(1, self.window - self.in_flight))

    def _after(self, slot: Slot) -> None:
        now = time.monotonic()
        took = now - slot.sent_at
        self.latency = 0.8 * self.latency + 0.2 * took
        self.fastest = min(self.fastest, took)
        if slot.rate_limited:
            self.rate_limited += 1
            if self.probing and slot.retry_after:
                # The probe ran ahead of the limit: nothing more passes before the server said.
                self._next_at = max(self._next_at, now + slot.retry_after)
            if slot.sent_at >= self._lowered_at:  # not a 429 from before the last decrease
                self._lower(now)
            return
        self._answered.append(now)
        while self._answered and now - self._answered[0] > 1.0:
            self._answered.popleft()
        if self.probing:
            # Grow while answers come as fast as the fastest: beyond that, more in flight only
            # queues (on loopback, more connections are slower).
            if took <= 2 * self.fastest + QUEUE_SLACK:
                self.probe_window += 1 / self.probe_window
            else:
                self.probe_window = max(1.0, self.probe_window - 1)
        elif self.rate < self.known_limit * HOLD_AT or now - self._lowered_at > HOLD_FOR:
            # About ``rate`` answers a second: +0.5% of the rate a second, up to just below the
            # limit last measured (and past it only after a while without 429s: limits change).
            self.rate += GROWTH
        if self.ceiling:
            self.rate = min(self.rate, self.ceiling) if self.rate else self.ceiling

    def _lower(self, now: float) -> None:
        # What the server accepted in the last second is its limit per second, as measured
        # (in a run younger than a second, all it accepted before refusing).
        accepted = sum(1 for t in self._answered if now - t <= 1.0)
        self.known_limit = max(1.0, float(accepted))
        measured = max(1.0, accepted * BACK_TO)
        self.rate = measured if self.probing else min(self.rate, measured)
        self.probing = False
        self._lowered_at = now
