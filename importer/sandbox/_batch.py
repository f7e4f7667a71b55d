"""The batch namespace as a real queue: ``run`` stores the jobs and answers an ``asyncId`` at
once; the batch waits in the queue (``queue_s``), then its jobs run at a pace (``jobs_per_s``);
``progress`` and ``results`` report on it.

Harder than a queue that runs at once and in order, where the reference is silent:
- results come back in any order (``order="shuffled"``, the default), each carrying its
  ``request``, so a client must match them to its jobs by that, never by position;
- a share of batches never completes (``stall_rate``): ``progress`` stops short of 100 and
  ``results`` answers 24114 for ever;
- a share of completed batches answers a result short (``short_rate``);
- ``callbackUrl`` is required (``require_callback``), as earlier versions of the page marked it
  and as both official SDKs always send it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _reference as ref
from ._refusal import Refusal, required

#: Runs one job: ``(namespace, action, params)`` → the job's answer body (success or error).
JobRunner = Callable[[str, str, Mapping[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class Batch:
    async_id: str
    jobs: list[dict[str, Any]]
    callback_url: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    stalls: bool = False
    short: bool = False

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.jobs)


@dataclass(frozen=True)
class QueueKnobs:
    queue_s: float = 0.0
    jobs_per_s: float = 0.0
    order: str = "shuffled"
    stall_rate: float = 0.0
    short_rate: float = 0.0
    require_callback: bool = True


class Batches:
    """Every batch of the sandbox, by ``asyncId``."""

    def __init__(self, run_job: JobRunner, knobs: QueueKnobs, rng: random.Random) -> None:
        self._run_job = run_job
        self.knobs = knobs
        self._random = rng
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

    def inspect(self) -> list[dict[str, Any]]:
        """Every batch, for the tests: its id, jobs, how far it ran, whether it stalls."""
        return [
            {
                "asyncId": b.async_id,
                "jobs": len(b.jobs),
                "ran": len(b.results),
                "stalls": b.stalls,
                "callbackUrl": b.callback_url,
            }
            for b in self._batches.values()
        ]

    def run(self, params: Mapping[str, Any]) -> dict[str, Any]:
        jobs = params.get("jobs")
        if jobs is None:
            raise required("jobs")
        if not isinstance(jobs, list):
            raise Refusal(400, "Incorrect job format", ref.BATCH_JOB_FORMAT,
                          ["'jobs' must be an array"])  # fmt: skip
        if not jobs:
            raise Refusal(
                400, "Empty job parameter", ref.BATCH_EMPTY_PARAMETER, ["'jobs' is empty"]
            )
        if len(jobs) > ref.MAX_BATCH_JOBS:
            raise Refusal(
                400,
                f"A batch may have at most {ref.MAX_BATCH_JOBS} jobs",
                ref.TOO_MANY_JOBS,
                [f"{len(jobs)} jobs were sent"],
            )
        for number, job in enumerate(jobs, start=1):
            _check_job(number, job)
        callback = params.get("callbackUrl")
        if callback in (None, "") and self.knobs.require_callback:
            raise required("callbackUrl", "the URL to hit with a POST request after the batch ran")
        if callback is not None and not isinstance(callback, str):
            raise Refusal(400, "'callbackUrl' does not validate", ref.DOES_NOT_VALIDATE,
                          ["Value must be a URL"])  # fmt: skip
        batch = Batch(
            async_id=uuid.uuid4().hex,
            jobs=[dict(j) for j in jobs],
            callback_url=callback,
            stalls=self._random.random() < self.knobs.stall_rate,
            short=self._random.random() < self.knobs.short_rate,
        )
        self._batches[batch.async_id] = batch
        self._start(batch)
        return {"asyncId": batch.async_id}

    def progress(self, params: Mapping[str, Any]) -> dict[str, Any]:
        batch = self._find(params, ref.BATCH_NOT_FOUND_PROGRESS)
        return {"progress": (100 * len(batch.results)) // len(batch.jobs)}

    def results(self, params: Mapping[str, Any]) -> dict[str, Any]:
        batch = self._find(params, ref.BATCH_NOT_FOUND_RESULTS)
        if not batch.done:
            raise Refusal(400, "The batch has not completed yet", ref.BATCH_NOT_COMPLETED)
        results = list(batch.results)
        if self.knobs.order == "shuffled":
            self._random.shuffle(results)
        if batch.short and results:
            results.pop(self._random.randrange(len(results)))
        return {"asyncId": batch.async_id, "results": results}

    def restart(self, params: Mapping[str, Any]) -> dict[str, Any]:
        batch = self._find(params, ref.BATCH_NOT_FOUND_PROGRESS)
        if batch.task is not None:
            batch.task.cancel()
        batch.results = []
        self._start(batch)
        return {"restarted": True}

    def repost(self, params: Mapping[str, Any]) -> dict[str, Any]:
        # The sandbox calls no callback URL (it talks to nothing but its clients).
        self._find(params, ref.BATCH_NOT_FOUND_RESULTS)
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
        if self.knobs.queue_s:
            await asyncio.sleep(self.knobs.queue_s)
        pause = 1 / self.knobs.jobs_per_s if self.knobs.jobs_per_s > 0 else 0.0
        for number, job in enumerate(batch.jobs, start=1):
            if batch.stalls and number == len(batch.jobs):
                return  # stuck before its last job, for ever
            params = job.get("params") or {}
            response = await self._run_job(job["namespace"], job["action"], params)
            batch.results.append(
                {
                    "namespace": job["namespace"],
                    "action": job["action"],
                    "request": params,
                    "response": response,
                }
            )
            if pause:
                await asyncio.sleep(pause)
            elif number % JOBS_BETWEEN_REQUESTS == 0:
                await asyncio.sleep(0)  # let requests in between


#: Jobs run between two looks at the requests waiting (a look per job costs more than the job).
JOBS_BETWEEN_REQUESTS = 25


def _check_job(number: int, job: Any) -> None:
    fmt = ref.BATCH_JOB_FORMAT
    if not isinstance(job, dict):
        raise Refusal(400, "Incorrect job format", fmt, [f"job {number} is not an object"])
    for key in ("namespace", "action"):
        value = job.get(key)
        if value in (None, ""):
            raise Refusal(400, "Empty job parameter", ref.BATCH_EMPTY_PARAMETER,
                          [f"job {number}: '{key}' is empty"])  # fmt: skip
        if not isinstance(value, str):
            raise Refusal(400, "Incorrect job format", fmt,
                          [f"job {number}: '{key}' must be a string"])  # fmt: skip
    if job["namespace"] == "batch":
        raise Refusal(400, "Incorrect job format", fmt, [f"job {number}: batches do not nest"])
    params = job.get("params")
    if params is not None and not isinstance(params, dict):
        raise Refusal(
            400, "Incorrect job format", fmt, [f"job {number}: 'params' must be an object"]
        )
