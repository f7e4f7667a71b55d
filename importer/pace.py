"""Pace: how fast requests go, found by probing, since no server says its limit (and the
limit may be of any kind: a per-second window, a bucket with a burst, a quota per minute).

Until the first 429 the importer probes as TCP avoids congestion: twenty-four requests in flight,
one more every round trip while answers come as fast as the fastest (fewer when they slow: more
connections on loopback only queue), up to ``--concurrency``.

Each 429 *episode* (a 429 for a request sent after the last decrease: the ones already in flight
then say nothing new) measures the limit two ways, and believes the lower: what the server
accepted over the last second, and what it accepted since the previous episode, per second. The
first is right for a per-second window; the second sees through a bucket's burst and a quota's
period. One rate then holds for every worker, at 99% of that limit, growing by 0.5% a second up
to 99.5% of it (past it only after 30 s without a 429: limits change). Requests are spaced
``1 / rate`` apart (a leaky bucket the workers share), never faster than ``--rate``, and the
number in flight follows the measured latency times the rate.

``Retry-After`` is honoured for everyone: an episode with one pauses every worker until then,
and the first request after the pause goes alone. An episode in which the server accepted
nothing since the last (a quota used up, a bucket empty for long) leaves the rate as it is: every
worker waits (its ``Retry-After``, else 0.1 s doubling to 0.5 s) and one request at a time probes
until the server accepts again. A 429 that means "busy" (24299) is not a rate and slows nothing;
a gateway's 503 or bare 403 slows it when they cluster.
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
#: Gateway answers (503, a bare 403) over a second, as a share of the answers, that slow it.
OVERLOAD_SHARE = 0.2
#: While the server accepts nothing: the first wait, and the longest, between single probes.
BLOCK_FIRST = 0.1
BLOCK_MOST = 0.5
#: A pause at least this long is a quota's, not a per-second window's.
LONG_PAUSE = 2.0


@dataclass
class Slot:
    """One request's turn: when it was sent, and (set by the caller) whether it was refused."""

    sent_at: float
    rate_limited: bool = False
    retry_after: float | None = None
    #: A gateway's 503 or bare 403: a sign of overload, heeded when such answers cluster.
    overloaded: bool = False


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
        self._overloads: deque[float] = deque()
        #: Answers accepted in all, and when and at what count the last episode was.
        self._accepted = 0
        self._mark = (time.monotonic(), 0)
        #: Nothing accepted since the last episode: one request at a time, after a pause.
        self.blocked = False
        self._block = BLOCK_FIRST
        self._blocked_at = 0.0
        #: When the last pause ended (at first: when the pace began), and the count accepted
        #: then: a quota's period began no later than the first request.
        self._resumed: tuple[float, int] | None = (time.monotonic(), 0)
        #: What the server accepted over the second before its last 429.
        self.known_limit = float("inf")
        self._turn = asyncio.Condition()

    @property
    def window(self) -> int:
        """How many requests may be in flight: while probing, the probe's; then enough for the
        rate at the measured latency."""
        if self.blocked:
            return 1
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
        if slot.overloaded:
            # A gateway's 503/403 now and then is noise; many within a second mean overload:
            # then it slows the pace like a 429.
            self._overloads.append(now)
            while self._overloads and now - self._overloads[0] > 1.0:
                self._overloads.popleft()
            answers = sum(1 for t in self._answered if now - t <= 1.0)
            if len(self._overloads) > max(2, OVERLOAD_SHARE * answers):
                slot.rate_limited = True
        if slot.rate_limited:
            self.rate_limited += 1
            if slot.sent_at >= self._lowered_at:  # not a 429 from before the last decrease
                self._episode(now, slot.retry_after)
            return
        self._accepted += 1
        if self.blocked:
            self._unblocked(now)
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

    def _episode(self, now: float, retry_after: float | None) -> None:
        """A 429 that says something new: lower the rate to the limit measured, or (nothing
        accepted since the last) wait and probe; either way honour ``Retry-After``."""
        since, count = self._mark
        accepted = self._accepted - count
        if accepted == 0 and not self.probing:
            # Nothing passes now (a quota used up): keep the rate, wait, probe alone.
            wait = retry_after if retry_after is not None else self._block
            self._block = min(BLOCK_MOST, self._block * 2)
        else:
            self._lower(now, accepted / max(now - since, 1e-3))
            self._mark = (now, self._accepted)
            wait = retry_after or 0.0
        if wait:
            # Nothing more is sent before the server said (or before the pause is over).
            self._next_at = max(self._next_at, now + wait)
            if not self.blocked:
                self._blocked_at = now
            self.blocked = True
        self._lowered_at = now

    def _unblocked(self, now: float) -> None:
        """The first answer accepted after a pause. From one pause's end to the next, a quota
        accepts exactly its count: what passed between them, per second, is its rate."""
        self.blocked = False
        self._block = BLOCK_FIRST
        paused = now - self._blocked_at
        if self._resumed is not None and paused >= LONG_PAUSE:
            # Only a long pause (longer than a per-second window makes) marks a quota's period.
            since, count = self._resumed
            if now - since >= 1.0:
                cycle = (self._accepted - 1 - count) / (now - since)
                if cycle * BACK_TO < self.rate:
                    # A pause may end a little after the period did: the cycle measured is a
                    # floor of the rate, from which the rate grows (no hold below it).
                    self.rate = max(1.0, cycle * BACK_TO)
        self._resumed = (now, self._accepted - 1)
        # The next episode measures from here: a pause is not time the limit was open.
        self._mark = self._resumed

    def _lower(self, now: float, over_episode: float) -> None:
        # What the server accepted in the last second, and per second since the last episode:
        # the lower is the limit, as measured (a burst or a quota's period inflates the first).
        last_second = sum(1 for t in self._answered if now - t <= 1.0)
        self.known_limit = max(1.0, float(min(last_second, over_episode)))
        measured = max(1.0, self.known_limit * BACK_TO)
        self.rate = measured if self.probing else min(self.rate, measured)
        self.probing = False
