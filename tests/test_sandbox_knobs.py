"""The sandbox's knobs (rate limit, failures, dropped answers) and its inspection routes."""

from __future__ import annotations

import asyncio
import re
import time

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
    # Once more within the same second, by hand, to see the header as sent.
    raw = raw_post(
        server.base_url,
        "/api/1.0/test?action=ping",
        b"",
        key=server.config.key,
        secret=server.config.secret,
    )
    if raw.status_code == 429:
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
