"""The batch namespace on the sandbox."""

from __future__ import annotations

import asyncio
import time

from importer.client import ApiError
from importer.sandbox._batch import Batches
from importer.sandbox._refusal import Refusal

from .conftest import call, raises

DUE = "2026-12-01 09:30:00"


def job(**params):
    return {"namespace": "crm", "action": "addOrUpdateTask", "params": params}


def wait_done(sandbox, async_id, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if call(sandbox, "batch", "progress", {"async": async_id})["progress"] == 100:
            return
        time.sleep(0.02)
    raise AssertionError("batch did not finish")


def test_batch_of_three_jobs_runs_in_order_with_per_job_answers(sandbox):
    jobs = [job(name="A", endDatetime=DUE), job(name="B"), job(name="C", endDatetime=DUE)]
    async_id = call(sandbox, "batch", "run", {"jobs": jobs, "callbackUrl": ""})["asyncId"]
    wait_done(sandbox, async_id)
    answer = call(sandbox, "batch", "results", {"async": async_id})
    assert answer["asyncId"] == async_id
    results = answer["results"]
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
    async_id = call(sandbox, "batch", "run", {"jobs": jobs})["asyncId"]
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

        batches = Batches(slow_job)
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
    async_id = call(sandbox, "batch", "run", {"jobs": [job(name="A", endDatetime=DUE)]})["asyncId"]
    wait_done(sandbox, async_id)
    assert call(sandbox, "batch", "restart", {"async": async_id}) == {"restarted": True}
    wait_done(sandbox, async_id)
    assert [t["name"] for t in sandbox.tasks()] == ["A", "A"]
    assert call(sandbox, "batch", "repost", {"async": async_id}) == {"reposted": True}
