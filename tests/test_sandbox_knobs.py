"""The sandbox's knobs (rate limit, failures, dropped answers) and its inspection routes."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter

import httpx
import pytest

from importer.client import IvvyClient, RateLimited, ServerError, TransportError

from .conftest import call, raises
from .rawsign import raw_post

DUE = "2026-12-01 09:30:00"


async def burst(server, count):
    """``count`` pings at once; the exceptions and answers, in order."""
    async with IvvyClient(server.credentials, max_connections=count, read_attempts=1) as client:
        return await asyncio.gather(*(client.ping() for _ in range(count)), return_exceptions=True)


@pytest.mark.parametrize(("style", "pattern"), [("seconds", r"\d+"), ("date", r".+ GMT")])
def test_beyond_the_rate_limit_answers_429_with_retry_after(make_sandbox, style, pattern):
    server = make_sandbox(rate_limit=5, retry_after=style)
    answers = asyncio.run(burst(server, 20))
    limited = [a for a in answers if isinstance(a, RateLimited)]
    passed = [a for a in answers if isinstance(a, dict)]
    assert len(passed) == 5 and len(limited) == 15
    assert all(a.error_code == 429 and a.retry_after is not None for a in limited)
    assert all(0 <= a.retry_after <= 2 for a in limited)
    stats = server.stats()
    assert stats["rate_limited"] == 15 and stats["by_status"]["429"] == 15
    # By hand, to see the header as sent: a quota used up stays used up for its period.
    used_up = make_sandbox(
        rate_limit=1 / 60, limit_kind="quota", quota_period_s=60, retry_after=style
    )
    statuses = [
        raw_post(used_up.base_url, "/api/1.0/test?action=ping", b"", key=used_up.config.key,
                 secret=used_up.config.secret)
        for _ in range(3)
    ]  # fmt: skip
    assert [r.status_code for r in statuses] == [200, 429, 429]
    for raw in statuses[1:]:
        assert re.fullmatch(pattern, raw.headers["Retry-After"])
        assert raw.json()["errorCode"] == 429


def test_retry_after_can_be_left_out(make_sandbox):
    server = make_sandbox(rate_limit=1, retry_after="none")
    answers = asyncio.run(burst(server, 3))
    limited = [a for a in answers if isinstance(a, RateLimited)]
    assert limited and all(a.retry_after is None for a in limited)


def test_dropped_answer_still_stores_the_write(make_sandbox):
    server = make_sandbox(drop_rate=1.0)
    exc = raises(server, "crm", "addOrUpdateTask", {"name": "Lost", "endDatetime": DUE})
    assert isinstance(exc, TransportError) and exc.maybe_processed
    assert [t["name"] for t in server.tasks()] == ["Lost"]
    stats = server.stats()
    assert stats["drops"] == 1 and stats["by_status"] == {"dropped": 1}


def test_injected_failure_answers_500_and_stores_nothing(make_sandbox):
    server = make_sandbox(fail_rate=1.0)
    exc = raises(server, "crm", "addOrUpdateTask", {"name": "Nope", "endDatetime": DUE})
    assert isinstance(exc, ServerError) and exc.error_code == 500
    assert server.tasks() == []
    assert server.stats()["failures_injected"] == 1


def test_injected_failures_hit_single_batch_jobs(make_sandbox):
    server = make_sandbox(fail_rate=0.5, random_seed=7)
    jobs = [
        {
            "namespace": "crm",
            "action": "addOrUpdateTask",
            "params": {"name": f"T{n}", "endDatetime": DUE},
        }
        for n in range(40)
    ]
    # The run call itself may be failed too: retry it until it is accepted.
    for _ in range(20):
        try:
            async_id = call(
                server, "batch", "run", {"jobs": jobs, "callbackUrl": "https://x.invalid/"}
            )["asyncId"]
            break
        except ServerError:
            continue
    for _ in range(500):
        try:
            answer = call(server, "batch", "results", {"async": async_id})
            break
        except Exception:
            time.sleep(0.01)
    failed = [r for r in answer["results"] if r["response"].get("errorCode") == 500]
    assert 0 < len(failed) < 40
    assert len(server.tasks()) == 40 - len(failed)


def test_stats_count_requests_by_action_and_status(sandbox):
    call(sandbox, "test", "ping")
    raises(sandbox, "crm", "addOrUpdateTask", {"name": "x"})
    stats = sandbox.stats()
    assert stats["requests"] == 2
    assert stats["by_action"] == {"test.ping": 1, "crm.addOrUpdateTask": 1}
    assert stats["by_status"] == {"200": 1, "400": 1}


def test_reset_goes_back_to_the_seed(sandbox):
    call(
        sandbox,
        "crm",
        "addOrUpdateTask",
        {"name": "x", "endDatetime": DUE, "contactId": 1, "companyId": 2},
    )
    sandbox.reset()
    assert sandbox.tasks() == []
    assert sandbox.stats()["requests"] == 0
    assert call(sandbox, "contact", "getContact", {"id": 1})["companyId"] == "1"
    assert call(sandbox, "crm", "addOrUpdateTask", {"name": "y", "endDatetime": DUE})["id"] == 1


def test_delete_a_task_for_tests(sandbox):
    task_id = call(sandbox, "crm", "addOrUpdateTask", {"name": "x", "endDatetime": DUE})["id"]
    assert httpx.delete(f"{sandbox.base_url}/_sandbox/tasks/{task_id}").json()["deleted"] is True
    assert httpx.delete(f"{sandbox.base_url}/_sandbox/tasks/{task_id}").status_code == 404
    assert sandbox.tasks() == []


def test_seed_file_replaces_the_default(make_sandbox, tmp_path):
    from importer.sandbox import load_seed

    seed_file = tmp_path / "seed.json"
    seed_file.write_text('{"contacts": [{"id": 7, "email": "x@example.com"}]}', encoding="utf-8")
    server = make_sandbox(seed=load_seed(seed_file))
    page = call(server, "contact", "getContactList")
    assert [c["id"] for c in page["results"]] == ["7"]
    assert call(server, "venue", "getVenueList")["results"] == []


@pytest.mark.parametrize(
    ("knobs", "passed"),
    [
        ({"limit_kind": "window", "rate_limit": 5}, 5),
        ({"limit_kind": "bucket", "rate_limit": 5, "burst": 12}, 12),
        ({"limit_kind": "quota", "rate_limit": 5, "quota_period_s": 2}, 10),
    ],
)
def test_each_kind_of_limit_lets_its_share_through_a_burst(make_sandbox, knobs, passed):
    server = make_sandbox(**knobs)
    answers = asyncio.run(burst(server, 30))
    assert sum(isinstance(a, dict) for a in answers) == passed
    assert all(isinstance(a, RateLimited) for a in answers if not isinstance(a, dict))


def test_requests_are_kept_with_their_bodies_and_statuses(sandbox):
    call(sandbox, "crm", "addOrUpdateTask", {"name": "Kept", "endDatetime": DUE, "status": 1})
    raises(sandbox, "crm", "addOrUpdateTask", {"name": "No date"})
    kept = sandbox.get("/_sandbox/requests?action=addOrUpdateTask")
    assert [(r["body"], r["status"]) for r in kept] == [
        ({"name": "Kept", "endDatetime": DUE, "status": 1}, 200),
        ({"name": "No date"}, 400),
    ]
    assert sandbox.get(f"/_sandbox/requests?since={kept[0]['seq']}") == kept[1:]


@pytest.mark.parametrize("code", [462, 463])
def test_a_session_ends_after_so_many_requests(make_sandbox, code):
    from importer.client import AuthError

    server = make_sandbox(session_end_after=2, session_end_code=code)
    call(server, "test", "ping")
    call(server, "test", "ping")
    exc = raises(server, "test", "ping")
    assert isinstance(exc, AuthError) and exc.ends_session and exc.error_code == code


def test_gateway_answers_are_not_json_and_do_nothing(make_sandbox):
    server = make_sandbox(gateway_rate=1.0, random_seed=2)
    exc = raises(server, "crm", "addOrUpdateTask", {"name": "x", "endDatetime": DUE})
    assert exc.http_status in (403, 503) and exc.specific_code is None
    assert isinstance(exc, RateLimited if exc.http_status == 403 else ServerError)
    assert server.tasks() == []


def test_a_late_write_lands_after_its_answer_was_lost(make_sandbox):
    server = make_sandbox(late_write_rate=1.0, late_write_max_s=0.3)
    exc = raises(server, "crm", "addOrUpdateTask", {"name": "Late", "endDatetime": DUE})
    assert isinstance(exc, TransportError) and exc.maybe_processed
    deadline = time.monotonic() + 5
    while not server.tasks():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [t["name"] for t in server.tasks()] == ["Late"]


def test_list_reads_lag_behind_writes(make_sandbox):
    server = make_sandbox(read_lag_s=0.5)
    call(server, "crm", "addOrUpdateTask", {"name": "Lagging", "endDatetime": DUE})
    assert call(server, "crm", "getTaskList")["results"] == []  # not yet
    assert len(server.tasks()) == 1  # but it is there
    time.sleep(0.6)
    assert [t["name"] for t in call(server, "crm", "getTaskList")["results"]] == ["Lagging"]


def test_a_skewed_clock_refuses_our_time_and_shows_its_own_in_date_and_ping(make_sandbox):
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    server = make_sandbox(clock_skew_s=900)
    raw = raw_post(server.base_url, "/api/1.0/test?action=ping", b"", key=server.config.key,
                   secret=server.config.secret)  # fmt: skip
    assert raw.status_code == 401 and raw.json()["specificCode"] == 23005
    served = parsedate_to_datetime(raw.headers["Date"])
    assert 880 < (served - datetime.now(UTC)).total_seconds() < 920

    async def measured():
        async with IvvyClient(server.credentials) as client:
            answer = await client.measure_clock()
            return answer, client.clock_offset, client.clock_note

    answer, offset, note = asyncio.run(measured())  # our client learns it and signs with it
    assert "ack" in answer and 880 < offset < 920 and "behind" in note


def test_other_writers_make_tasks_while_the_importer_is_busy(make_sandbox):
    server = make_sandbox(other_writers=2, other_writer_every_ms=10, other_identical_share=1.0)
    call(server, "crm", "addOrUpdateTask", {"name": "Mine", "endDatetime": DUE})
    deadline = time.monotonic() + 5
    while len(server.tasks()) < 6:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    creators = Counter(t["_sandbox"]["creator"] for t in server.tasks())
    assert creators["client"] == 1 and creators["other-writer-1"] + creators["other-writer-2"] >= 5
    assert {t["name"] for t in server.tasks()} == {"Mine"}  # copies of what the importer sent
