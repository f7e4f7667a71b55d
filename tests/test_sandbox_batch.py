"""The batch namespace on the sandbox."""

from __future__ import annotations

import asyncio
import random
import time

from importer.client import ApiError
from importer.sandbox._batch import Batches, QueueKnobs
from importer.sandbox._refusal import Refusal

from .conftest import call, raises

DUE = "2026-12-01 09:30:00"
CALLBACK = "https://example.invalid/done"


def job(**params):
    return {"namespace": "crm", "action": "addOrUpdateTask", "params": params}


def wait_done(sandbox, async_id, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if call(sandbox, "batch", "progress", {"async": async_id})["progress"] == 100:
            return
        time.sleep(0.02)
    raise AssertionError("batch did not finish")


def run(sandbox, jobs, **extra):
    return call(sandbox, "batch", "run", {"jobs": jobs, "callbackUrl": CALLBACK, **extra})


def test_batch_of_three_jobs_answers_each_job_with_its_request(sandbox):
    jobs = [job(name="A", endDatetime=DUE), job(name="B"), job(name="C", endDatetime=DUE)]
    async_id = run(sandbox, jobs)["asyncId"]
    wait_done(sandbox, async_id)
    answer = call(sandbox, "batch", "results", {"async": async_id})
    assert answer["asyncId"] == async_id
    results = sorted(answer["results"], key=lambda r: r["request"]["name"])
    assert [r["request"]["name"] for r in results] == ["A", "B", "C"]
    assert all((r["namespace"], r["action"]) == ("crm", "addOrUpdateTask") for r in results)
    assert results[0]["response"] == {"success": True, "id": 1}
    assert results[1]["response"]["specificCode"] == 23017
    assert results[2]["response"] == {"success": True, "id": 2}
    assert sorted(t["name"] for t in sandbox.tasks()) == ["A", "C"]


def test_batch_of_201_jobs_is_refused_24448(sandbox):
    exc = raises(sandbox, "batch", "run", {"jobs": [job(name="x", endDatetime=DUE)] * 201})
    assert isinstance(exc, ApiError) and exc.specific_code == 24448
    assert sandbox.tasks() == []


def test_batch_of_200_jobs_is_accepted(sandbox):
    jobs = [job(name=f"T{n}", endDatetime=DUE) for n in range(200)]
    async_id = run(sandbox, jobs)["asyncId"]
    wait_done(sandbox, async_id)
    assert len(sandbox.tasks()) == 200


def test_bad_job_format_is_24092(sandbox):
    for jobs in (["not a job"], [{"namespace": "crm", "action": "x", "params": [1]}], "x"):
        exc = raises(sandbox, "batch", "run", {"jobs": jobs})
        assert isinstance(exc, ApiError) and exc.specific_code == 24092, jobs


def test_empty_job_parameter_is_24093(sandbox):
    for jobs in ([], [{"namespace": "", "action": "addOrUpdateTask"}]):
        exc = raises(sandbox, "batch", "run", {"jobs": jobs})
        assert isinstance(exc, ApiError) and exc.specific_code == 24093, jobs


def test_unknown_batch_is_24105_for_progress_and_24115_for_results(sandbox):
    exc = raises(sandbox, "batch", "progress", {"async": "nope"})
    assert isinstance(exc, ApiError) and exc.specific_code == 24105
    exc = raises(sandbox, "batch", "results", {"async": "nope"})
    assert isinstance(exc, ApiError) and exc.specific_code == 24115


def test_results_before_completion_are_24114():
    async def scenario():
        release = asyncio.Event()

        async def slow_job(namespace, action, params):
            await release.wait()
            return {"success": True, "id": 1}

        batches = Batches(slow_job, QueueKnobs(require_callback=False), random.Random(1))
        async_id = batches.run({"jobs": [job(name="A", endDatetime=DUE)]})["asyncId"]
        await asyncio.sleep(0)
        assert batches.progress({"async": async_id}) == {"progress": 0}
        try:
            batches.results({"async": async_id})
        except Refusal as refusal:
            code = refusal.specific_code
        else:
            code = None
        release.set()
        for _ in range(100):
            await asyncio.sleep(0)
        assert batches.results({"async": async_id})["results"][0]["response"]["id"] == 1
        return code

    assert asyncio.run(scenario()) == 24114


def test_restart_runs_the_whole_batch_again(sandbox):
    async_id = run(sandbox, [job(name="A", endDatetime=DUE)])["asyncId"]
    wait_done(sandbox, async_id)
    assert call(sandbox, "batch", "restart", {"async": async_id}) == {"restarted": True}
    wait_done(sandbox, async_id)
    assert [t["name"] for t in sandbox.tasks()] == ["A", "A"]
    assert call(sandbox, "batch", "repost", {"async": async_id}) == {"reposted": True}


def test_callback_url_is_required_as_the_reference_once_marked_it(sandbox, make_sandbox):
    exc = raises(sandbox, "batch", "run", {"jobs": [job(name="A", endDatetime=DUE)]})
    assert isinstance(exc, ApiError) and exc.specific_code == 23017
    assert "callbackUrl" in exc.message
    relaxed = make_sandbox(require_callback=False)
    assert "asyncId" in call(relaxed, "batch", "run", {"jobs": [job(name="A", endDatetime=DUE)]})


def test_results_come_in_any_order_by_default_and_in_order_when_asked(make_sandbox):
    jobs = [job(name=f"T{n:03}", endDatetime=DUE) for n in range(60)]
    orders = {}
    for order in ("shuffled", "in-order"):
        server = make_sandbox(batch_order=order, random_seed=3)
        async_id = run(server, jobs)["asyncId"]
        wait_done(server, async_id)
        results = call(server, "batch", "results", {"async": async_id})["results"]
        orders[order] = [r["request"]["name"] for r in results]
        # Each result's request is its job's: the task made is the task asked for.
        names = {t["id"]: t["name"] for t in server.tasks()}
        assert all(names[r["response"]["id"]] == r["request"]["name"] for r in results)
    expected = [f"T{n:03}" for n in range(60)]
    assert orders["in-order"] == expected
    assert orders["shuffled"] != expected and sorted(orders["shuffled"]) == expected


def test_a_queued_batch_waits_then_runs_at_its_pace(make_sandbox):
    server = make_sandbox(batch_queue_s=0.3, batch_jobs_per_s=50)
    async_id = run(server, [job(name=f"T{n}", endDatetime=DUE) for n in range(10)])["asyncId"]
    assert call(server, "batch", "progress", {"async": async_id}) == {"progress": 0}
    exc = raises(server, "batch", "results", {"async": async_id})
    assert isinstance(exc, ApiError) and exc.specific_code == 24114
    wait_done(server, async_id)
    assert len(server.tasks()) == 10


def test_a_stalled_batch_never_completes(make_sandbox):
    server = make_sandbox(batch_stall_rate=1.0)
    async_id = run(server, [job(name=f"T{n}", endDatetime=DUE) for n in range(5)])["asyncId"]
    time.sleep(0.2)
    assert call(server, "batch", "progress", {"async": async_id})["progress"] == 80
    exc = raises(server, "batch", "results", {"async": async_id})
    assert isinstance(exc, ApiError) and exc.specific_code == 24114
    assert [b["stalls"] for b in server.get("/_sandbox/batches")] == [True]


def test_a_short_answer_leaves_one_job_out(make_sandbox):
    server = make_sandbox(batch_short_rate=1.0)
    async_id = run(server, [job(name=f"T{n}", endDatetime=DUE) for n in range(5)])["asyncId"]
    wait_done(server, async_id)
    assert len(call(server, "batch", "results", {"async": async_id})["results"]) == 4
    assert len(server.tasks()) == 5
