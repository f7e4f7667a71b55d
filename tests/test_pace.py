"""The pace, on a clock of its own (no real waiting, no timing assertions): probing, the
window, spacing, what each kind of 429 does, and that ``Retry-After`` is honoured end to end."""

from __future__ import annotations

import asyncio
import itertools
import types

import pytest

from importer import pace as pace_module
from importer.pace import BACK_TO, BLOCK_FIRST, HOLD_AT, INITIAL_WINDOW, Pace


class Clock:
    """Virtual time for the pace: ``sleep`` moves it on at once."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(pace_module, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    monkeypatch.setattr(
        pace_module, "asyncio", types.SimpleNamespace(Condition=asyncio.Condition, sleep=fake.sleep)
    )
    return fake


async def answer(pace: Pace, clock: Clock, *, took: float = 0.01, **slot_fields) -> float:
    """One request through the pace: when it went (virtual), answered after ``took``."""
    async with pace.slot() as slot:
        sent = slot.sent_at
        clock.now += took
        for name, value in slot_fields.items():
            setattr(slot, name, value)
    return sent


def test_the_probe_starts_with_its_initial_window_in_flight_and_never_less_than_one():
    pace = Pace(concurrency=32)
    assert pace.window == INITIAL_WINDOW
    pace.probe_window = 0.4  # shrunk as far as slow answers can shrink it
    assert pace.window == 1


def test_a_ceiling_spaces_requests_one_over_the_rate_apart(clock):
    async def scenario():
        pace = Pace(ceiling=5.0)
        return [await answer(pace, clock, took=0.0) for _ in range(6)]

    sent = asyncio.run(scenario())
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(sent)]
    assert gaps == [0.2] * 5


def test_the_first_429_sets_the_rate_to_what_was_accepted_and_pauses_all(clock):
    async def scenario():
        pace = Pace(concurrency=8)
        for _ in range(40):
            await answer(pace, clock, took=0.01)  # 40 accepted within the last second
        refused_at = clock.now
        await answer(pace, clock, rate_limited=True, retry_after=2.0)
        rate = pace.rate
        after = await answer(pace, clock)
        return pace, rate, refused_at, after

    pace, rate, refused_at, after = asyncio.run(scenario())
    assert not pace.probing and rate == 40 * BACK_TO and pace.rate_limited == 1
    assert after >= refused_at + 2.0  # nothing before the Retry-After


def test_retry_after_is_honoured_for_every_worker_at_every_episode(clock):
    async def scenario():
        pace = Pace(concurrency=8)
        for _ in range(50):
            await answer(pace, clock)
        await answer(pace, clock, rate_limited=True, retry_after=1.0)
        for _ in range(100):
            await answer(pace, clock)
        refused_at = clock.now
        await answer(pace, clock, rate_limited=True, retry_after=3.0)  # a later episode
        window_then = pace.window
        after = await asyncio.gather(*(answer(pace, clock) for _ in range(5)))
        return refused_at, window_then, after, pace

    refused_at, window_then, after, pace = asyncio.run(scenario())
    assert min(after) >= refused_at + 3.0
    assert window_then == 1  # the first request after the pause goes alone
    assert pace.window > 1  # and once it passed, the others follow


def test_429s_of_requests_sent_before_a_decrease_do_not_lower_it_again(clock):
    async def scenario():
        pace = Pace(concurrency=8)
        for _ in range(20):
            await answer(pace, clock)
        async with pace.slot() as first:
            clock.now += 0.01
        early = first.sent_at
        first.rate_limited = True
        pace._after(first)  # the answer: a 429
        pace.rate = 100.0  # as if it had grown back since
        stale = type(first)(sent_at=early - 0.001, rate_limited=True)
        pace._after(stale)  # a 429 for a request sent before that decrease
        return pace.rate

    assert asyncio.run(scenario()) == 100.0


def test_after_a_429_the_rate_grows_only_to_just_below_the_limit_it_measured(clock):
    async def scenario():
        pace = Pace(concurrency=8)
        for _ in range(50):
            await answer(pace, clock, took=0.001)
        await answer(pace, clock, rate_limited=True)
        for _ in range(400):  # many answers: growth would pass 50/s without the hold
            await answer(pace, clock, took=0.0)
        return pace

    pace = asyncio.run(scenario())
    assert pace.known_limit == 50
    assert 50 * BACK_TO < pace.rate <= 50 * HOLD_AT + 0.01


def test_a_burst_does_not_pass_for_the_limit(clock):
    """A bucket lets a burst through, then its rate: the second episode measures the rate."""

    async def scenario():
        pace = Pace(concurrency=8)
        for _ in range(200):  # the burst, within a second
            await answer(pace, clock, took=0.001)
        await answer(pace, clock, rate_limited=True)
        for _ in range(20):  # then 20 a second, for a second
            await answer(pace, clock, took=0.05)
        await answer(pace, clock, rate_limited=True)
        return pace

    pace = asyncio.run(scenario())
    assert pace.known_limit < 25 and pace.rate < 25


def test_a_quota_used_up_keeps_the_rate_and_probes_alone(clock):
    async def scenario():
        pace = Pace(concurrency=8)
        for _ in range(100):
            await answer(pace, clock, took=0.005)
        await answer(pace, clock, rate_limited=True)  # no Retry-After
        rate = pace.rate
        refused_at = clock.now
        await answer(pace, clock, rate_limited=True)  # nothing accepted since: used up
        probe = await answer(pace, clock)
        return pace, rate, refused_at, probe

    pace, rate, refused_at, probe = asyncio.run(scenario())
    assert pace.rate >= rate  # not lowered to nothing (the probe that passed grew it a little)
    assert probe >= refused_at + BLOCK_FIRST
    assert not pace.blocked  # the probe passed


def send_tasks(server, count: int, **options):
    """``count`` tasks T2, T3… sent to ``server`` through the send stage (``options``: its
    SendOptions); its stats, and each row's outcome by row number."""
    from importer.client import IvvyClient
    from importer.model import Payload, Row
    from importer.send import SendOptions, send_all

    items = [Payload(Row(n, {}), {"name": f"T{n}", "endDatetime": "2026-12-01 09:00:00"})
             for n in range(2, count + 2)]  # fmt: skip
    outcomes = {}

    async def go():
        async with IvvyClient(server.credentials) as client:
            return await send_all(client, items, lambda p, o: outcomes.__setitem__(p.row.number, o),
                                  SendOptions(**options))  # fmt: skip

    return asyncio.run(go()), outcomes


def test_busy_429s_24299_are_retried_and_do_not_slow_the_pace(make_sandbox):
    server = make_sandbox(busy_rate=0.3, random_seed=1)
    stats, outcomes = send_tasks(server, 60, settle=0.5)
    assert {o.result for o in outcomes.values()} == {"created"} and len(server.tasks()) == 60
    assert server.stats()["faults"]["busy"] > 5
    assert stats.rate_limited == 0


def test_the_send_stage_honours_retry_after_end_to_end(make_sandbox):
    """A quota of 40 per 4 s: after each 429 with its Retry-After, nothing more arrives until
    then (but what was already on its way)."""
    server = make_sandbox(limit_kind="quota", rate_limit=10, quota_period_s=4, latency_ms=5)
    send_tasks(server, 100, concurrency=8)
    assert len(server.tasks()) == 100
    log = server.get("/_sandbox/requests?action=addOrUpdateTask")
    refusals = [r for r in log if r["status"] == 429]
    assert refusals
    for refusal in refusals:
        until = refusal["t"] + float(refusal["retry_after"])
        # Allow what was already in flight when the 429 came back (loopback: well within 0.5 s).
        early = [r for r in log if refusal["t"] + 0.5 < r["t"] < until - 0.05]
        assert not early, (refusal, early[:3])


def test_gateway_answers_slow_the_pace_only_when_they_cluster(clock):
    async def scenario(overloads: int):
        pace = Pace(concurrency=8)
        for _ in range(40):
            await answer(pace, clock, took=0.01)
        for _ in range(overloads):
            await answer(pace, clock, took=0.01, overloaded=True)
        return pace

    scattered = asyncio.run(scenario(2))  # a 503 now and then is noise
    assert scattered.probing and scattered.rate_limited == 0
    clustered = asyncio.run(scenario(12))  # many within a second: overload
    assert not clustered.probing and clustered.rate_limited > 0


@pytest.mark.parametrize(
    "knobs",
    [
        {"limit_kind": "window", "rate_limit": 30, "retry_after": "date"},
        {"limit_kind": "bucket", "rate_limit": 30, "burst": 40, "retry_after": "none"},
        {"limit_kind": "quota", "rate_limit": 30, "quota_period_s": 2, "retry_after": "date"},
    ],
)
def test_every_kind_of_limit_and_retry_after_is_gone_through_once(make_sandbox, knobs):
    server = make_sandbox(latency_ms=5, **knobs)
    stats, outcomes = send_tasks(server, 150, concurrency=8, settle=0.5)
    assert {o.result for o in outcomes.values()} == {"created"} and len(outcomes) == 150
    assert sorted(t["name"] for t in server.tasks()) == sorted(f"T{n}" for n in range(2, 152))
    assert stats.rate_limited == server.stats()["rate_limited"] > 0
