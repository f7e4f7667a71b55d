"""The batch namespace: ``run`` queues jobs and answers an ``asyncId`` at once; the jobs then run
in the background, in order; ``progress`` and ``results`` report on them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..fields import BATCH_MAX_JOBS
from ._refusal import Refusal, required

#: Runs one job: ``(namespace, action, params)`` → the job's answer body (success or error).
JobRunner = Callable[[str, str, Mapping[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class Batch:
    async_id: str
    jobs: list[dict[str, Any]]
    results: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.jobs)


class Batches:
    """Every batch of the sandbox, by ``asyncId``."""

    def __init__(self, run_job: JobRunner, *, delay: float = 0.0) -> None:
        self._run_job = run_job
        self._delay = delay
        self._batches: dict[str, Batch] = {}

    def handlers(self) -> dict[tuple[str, str], Callable[[Mapping[str, Any]], Any]]:
        return {
            ("batch", "run"): self.run,
            ("batch", "progress"): self.progress,
            ("batch", "results"): self.results,
            ("batch", "restart"): self.restart,
            ("batch", "repost"): self.repost,
        }

    def clear(self) -> None:
        for batch in self._batches.values():
            if batch.task is not None:
                batch.task.cancel()
        self._batches.clear()

    def run(self, params: Mapping[str, Any]) -> dict[str, Any]:
        jobs = params.get("jobs")
        if jobs is None:
            raise required("jobs")
        if not isinstance(jobs, list):
            raise Refusal(400, "Incorrect job format", 24092, ["'jobs' must be an array"])
        if not jobs:
            raise Refusal(400, "Empty job parameter", 24093, ["'jobs' is empty"])
        if len(jobs) > BATCH_MAX_JOBS:
            raise Refusal(
                400,
                f"A batch may have at most {BATCH_MAX_JOBS} jobs",
                24448,
                [f"{len(jobs)} jobs were sent"],
            )
        for number, job in enumerate(jobs, start=1):
            _check_job(number, job)
        batch = Batch(async_id=uuid.uuid4().hex, jobs=[dict(j) for j in jobs])
        self._batches[batch.async_id] = batch
        self._start(batch)
        return {"asyncId": batch.async_id}

    def progress(self, params: Mapping[str, Any]) -> dict[str, Any]:
        batch = self._find(params, 24105)
        return {"progress": (100 * len(batch.results)) // len(batch.jobs)}

    def results(self, params: Mapping[str, Any]) -> dict[str, Any]:
        batch = self._find(params, 24115)
        if not batch.done:
            raise Refusal(400, "The batch has not completed yet", 24114)
        return {"asyncId": batch.async_id, "results": list(batch.results)}

    def restart(self, params: Mapping[str, Any]) -> dict[str, Any]:
        batch = self._find(params, 24105)
        if batch.task is not None:
            batch.task.cancel()
        batch.results = []
        self._start(batch)
        return {"restarted": True}

    def repost(self, params: Mapping[str, Any]) -> dict[str, Any]:
        # The sandbox calls no callback URL (it talks to nothing but its clients).
        self._find(params, 24115)
        return {"reposted": True}

    def _find(self, params: Mapping[str, Any], missing_code: int) -> Batch:
        async_id = params.get("async")
        if async_id in (None, ""):
            raise required("async")
        batch = self._batches.get(str(async_id))
        if batch is None:
            raise Refusal(404, "No such batch", missing_code, [f"asyncId {async_id}"])
        return batch

    def _start(self, batch: Batch) -> None:
        batch.task = asyncio.get_running_loop().create_task(self._process(batch))

    async def _process(self, batch: Batch) -> None:
        if self._delay:
            await asyncio.sleep(self._delay)
        for number, job in enumerate(batch.jobs, start=1):
            response = await self._run_job(job["namespace"], job["action"], job.get("params") or {})
            batch.results.append(
                {
                    "namespace": job["namespace"],
                    "action": job["action"],
                    "request": job.get("params") or {},
                    "response": response,
                }
            )
            if number % JOBS_BETWEEN_REQUESTS == 0:
                await asyncio.sleep(0)  # let requests in between


#: Jobs run between two looks at the requests waiting (a look per job costs more than the job).
JOBS_BETWEEN_REQUESTS = 25


def _check_job(number: int, job: Any) -> None:
    if not isinstance(job, dict):
        raise Refusal(400, "Incorrect job format", 24092, [f"job {number} is not an object"])
    for key in ("namespace", "action"):
        value = job.get(key)
        if value in (None, ""):
            raise Refusal(400, "Empty job parameter", 24093, [f"job {number}: '{key}' is empty"])
        if not isinstance(value, str):
            raise Refusal(
                400, "Incorrect job format", 24092, [f"job {number}: '{key}' must be a string"]
            )
    if job["namespace"] == "batch":
        raise Refusal(400, "Incorrect job format", 24092, [f"job {number}: batches do not nest"])
    params = job.get("params")
    if params is not None and not isinstance(params, dict):
        raise Refusal(
            400, "Incorrect job format", 24092, [f"job {number}: 'params' must be an object"]
        )
