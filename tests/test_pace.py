"""The pace: probing, the window, and what a 429 does (pure behaviour; speed is benchmarked)."""

from __future__ import annotations

import asyncio

from importer.pace import BACK_TO, INITIAL_WINDOW, Pace


def run(coroutine):
    return asyncio.run(coroutine)


def test_the_probe_starts_with_its_initial_window_in_flight_and_never_less_than_one():
    pace = Pace(concurrency=32)
    assert pace.window == INITIAL_WINDOW
    pace.probe_window = 0.4  # shrunk as far as slow answers can shrink it
    assert pace.window == 1


def test_a_ceiling_spaces_requests_from_the_start():
    pace = Pace(ceiling=5.0)
    assert pace.rate == 5.0


def test_the_first_429_sets_the_rate_to_what_was_accepted_and_pauses_all():
    async def scenario():
        pace = Pace(concurrency=8)
        for _ in range(40):
            async with pace.slot():
                pass
        async with pace.slot() as slot:
            slot.rate_limited = True
            slot.retry_after = 0.2
        return pace

    pace = run(scenario())
    assert not pace.probing
    assert pace.rate == 40 * BACK_TO  # 40 accepted within the last second
    assert pace.rate_limited == 1
    assert pace._next_at > 0  # nothing before the Retry-After


def test_429s_of_requests_sent_before_a_decrease_do_not_lower_it_again():
    async def scenario():
        pace = Pace(concurrency=8)
        for _ in range(20):
            async with pace.slot():
                pass
        slots = []
        async with pace.slot() as first:
            slots.append(first)
        first.rate_limited = True
        pace._after(first)  # the answer: a 429
        rate = pace.rate
        stale = type(first)(sent_at=first.sent_at - 0.001, rate_limited=True)
        pace._after(stale)  # another 429 for a request sent before that decrease
        return rate, pace.rate

    before, after = run(scenario())
    assert before == after


def test_after_a_429_the_rate_grows_only_to_just_below_the_limit_it_measured():
    from importer.pace import HOLD_AT

    async def scenario():
        pace = Pace(concurrency=8)
        for _ in range(50):
            async with pace.slot():
                pass
        async with pace.slot() as slot:
            slot.rate_limited = True
        for _ in range(400):  # many fast answers: growth would pass 50/s without the hold
            async with pace.slot():
                pace._next_at = 0.0  # no waiting in this test: only the rate's changes count
        return pace

    pace = run(scenario())
    assert pace.known_limit == 50
    assert 50 * BACK_TO < pace.rate <= 50 * HOLD_AT + 0.01
