"""Send: deliver payloads to ``crm?action=addOrUpdateTask`` concurrently, and know each outcome.

A fixed number of workers; a 429 pauses every worker for the server's ``Retry-After`` (or a
backoff). Answers that certainly changed nothing (429, a refused connection, a stale date) are
retried. A create whose answer was lost or was a server error may have been written: it is looked
up (:mod:`importer.reconcile`) before it is sent again, so it is created once. Updates set the
same values again and are simply retried. API refusals with a specific code are final.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from .client import ApiError, IvvyClient, RateLimited, ServerError, TransportError
from .fields import FIELDS_BY_NAME
from .model import Outcome, Payload
from .pace import Pace
from .reconcile import Reconciler, SameTaskLock, signature

#: The parameter each "does not exist" code is about.
_CODE_FIELD = {24389: "leadId", 24390: "contactId", 24391: "companyId", 24392: "id"}
_QUOTED = re.compile(r"'(\w+)'")
_STALE = 23005


@dataclass(frozen=True, slots=True)
class SendOptions:
    """``concurrency``: the most rows in flight at once (fewer when the measured latency times
    the rate needs fewer); ``rate``: a ceiling in requests per second; ``max_attempts``: tries per
    row for answers that are safe to retry."""

    concurrency: int = 32
    rate: float | None = None
    max_attempts: int = 8
    #: After a stop is asked for, how long rows already in flight may take to finish.
    grace: float = 5.0
    #: An update of a task deleted in iVvy since (24392) creates it again instead of failing.
    recreate_missing: bool = False


def backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1-based): exponential, capped at 10 s, with jitter."""
    return min(10.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)


INTERRUPTED = "INTERRUPTED"


async def send_all(
    client: IvvyClient,
    payloads: Iterable[Payload],
    on_outcome: Callable[[Payload, Outcome], None],
    options: SendOptions = SendOptions(),
    reconciler: Reconciler | None = None,
    stop: asyncio.Event | None = None,
) -> Reconciler:
    """Deliver every payload; ``on_outcome`` is called once per payload as its outcome is known.

    Payloads are pulled lazily, so only ``concurrency`` of them are held at a time. When ``stop``
    is set, no new row is taken; rows in flight get ``options.grace`` seconds to finish, and a row
    still in flight then is ``failed`` with ``INTERRUPTED`` (it may or may not be in iVvy: never
    reported as done). Returns the reconciler, which counts the look-ups made for lost answers.
    """
    pace = Pace(ceiling=options.rate, concurrency=options.concurrency)
    source: Iterator[Payload] = iter(payloads)
    reconciler = reconciler or Reconciler(client)
    alike = SameTaskLock()
    stop = stop or asyncio.Event()

    async def worker() -> None:
        for payload in source:
            if stop.is_set():
                return
            try:
                async with alike.hold(signature(payload.params)):
                    outcome = await deliver(
                        client,
                        payload,
                        pace,
                        options.max_attempts,
                        reconciler,
                        recreate_missing=options.recreate_missing,
                    )
            except asyncio.CancelledError:
                # The stop's grace is over and this row is still in flight.
                on_outcome(payload, _interrupted())
                return
            on_outcome(payload, outcome)

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, options.concurrency))]
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([stopping, asyncio.gather(*workers)], return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        # No new row is taken; the rows in flight get the grace to finish, then are reported.
        _, late = await asyncio.wait(workers, timeout=options.grace)
        for task in late:
            task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    stopping.cancel()
    reconciler.rate_limited = pace.rate_limited
    return reconciler


def _interrupted() -> Outcome:
    return Outcome(
        "failed",
        error_code=INTERRUPTED,
        message="interrupted while this row was being sent: it may or may not be in iVvy; "
        "check before importing it again",
    )


async def deliver(
    client: IvvyClient,
    payload: Payload,
    pace: Pace,
    max_attempts: int,
    reconciler: Reconciler | None = None,
    *,
    recreate_missing: bool = False,
) -> Outcome:
    """Send one payload, retrying only what is safe to retry; its outcome. With
    ``recreate_missing``, an update of a task that no longer exists becomes a create."""
    reconciler = reconciler or Reconciler(client)
    first_sent: datetime | None = None
    last: Exception | None = None
    notes: tuple[str, ...] = ()
    for attempt in range(1, max_attempts + 1):
        wait = backoff(attempt)
        first_sent = first_sent or datetime.now(UTC)
        async with pace.slot() as slot:
            try:
                task_id = await client.add_or_update_task(payload.params)
            except RateLimited as exc:  # refused before anything was done
                slot.rate_limited = True
                slot.retry_after = exc.retry_after
                last = exc
            except (ServerError, TransportError, ApiError) as exc:
                last = exc
            else:
                reconciler.own(task_id)
                return _done(payload, task_id, notes)
        if isinstance(last, RateLimited):
            wait = last.retry_after if last.retry_after is not None else wait
        elif isinstance(last, ServerError | TransportError):
            written = not isinstance(last, TransportError) or last.maybe_processed
            if not payload.is_update and written:
                found = await reconciler.find(payload.params, first_sent)
                if found is not None:
                    return found_outcome(found)
        elif isinstance(last, ApiError) and _recreate(payload, last, recreate_missing):
            notes = (_gone(payload),)
            payload = _as_create(payload)
            continue
        elif isinstance(last, ApiError) and last.specific_code != _STALE:
            return _failed(payload, last)  # a refusal with a reason: final
        await asyncio.sleep(wait)
    return _gave_up(last, max_attempts)


def _done(payload: Payload, task_id: int, warnings: tuple[str, ...]) -> Outcome:
    """The outcome of a row iVvy accepted."""
    return Outcome("updated" if payload.is_update else "created", task_id=task_id,
                   warnings=warnings)  # fmt: skip


MISSING_TASK = 24392


def _recreate(payload: Payload, exc: ApiError, recreate_missing: bool) -> bool:
    """Whether an update refused because its task is gone is to become a create."""
    return recreate_missing and payload.is_update and exc.specific_code == MISSING_TASK


def _gone(payload: Payload) -> str:
    return (
        f"task {payload.params['id']} no longer exists in iVvy: created again (--recreate-missing)"
    )


def _as_create(payload: Payload) -> Payload:
    return payload._replace(params={k: v for k, v in payload.params.items() if k != "id"})


def _failed(payload: Payload, exc: ApiError, message: str | None = None) -> Outcome:
    return Outcome(
        "failed",
        error_code=exc.code,
        field=_field_of(payload, exc),
        message=message or exc.full_message,
    )


def _field_of(payload: Payload, exc: ApiError) -> str | None:
    """The source column an API refusal is about, when the refusal says which parameter."""
    name = _CODE_FIELD.get(exc.specific_code or 0)
    if name is None:
        for text in (exc.message, *exc.additional_messages):
            quoted = _QUOTED.search(text)
            if quoted and quoted.group(1) in FIELDS_BY_NAME:
                name = quoted.group(1)
                break
    if name is None:
        return None
    return payload.columns.get(name, name)


BATCH_SIZE = 200
#: Batches in flight at once in batch mode.
BATCHES_IN_FLIGHT = 8


def _gave_up(last: Exception | None, attempts: int) -> Outcome:
    """The outcome of a row still not through after every attempt safe to make."""
    return Outcome(
        "failed",
        error_code=last.code if isinstance(last, ApiError) else "RETRIES_EXHAUSTED",
        message=f"gave up after {attempts} attempts: {last}",
    )


def found_outcome(task_id: int) -> Outcome:
    """The outcome of a create whose answer was lost and whose task a look-up found."""
    note = "iVvy's answer was lost; the task it made was found and kept"
    return Outcome("created", task_id=task_id, warnings=(note,))


def _job(payload: Payload) -> dict[str, Any]:
    return {"namespace": "crm", "action": "addOrUpdateTask", "params": dict(payload.params)}


async def send_batches(
    client: IvvyClient,
    payloads: Iterable[Payload],
    on_outcome: Callable[[Payload, Outcome], None],
    options: SendOptions = SendOptions(),
    reconciler: Reconciler | None = None,
    stop: asyncio.Event | None = None,
) -> Reconciler:
    """Deliver every payload through ``batch?action=run``, up to 200 a request, a few batches in
    flight; each job's answer goes back to its row. A batch whose ``run`` answer was lost, or a
    job answered with a server error, may have run: its creates are looked up before anything of
    it is sent again. ``stop`` stops taking rows (a batch already sent is waited for)."""
    pace = Pace(ceiling=options.rate, concurrency=BATCHES_IN_FLIGHT)
    source: Iterator[Payload] = iter(payloads)
    reconciler = reconciler or Reconciler(client)
    stop = stop or asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            group = list(islice(source, BATCH_SIZE))
            if not group:
                return
            outcomes = await deliver_batch(
                client,
                group,
                pace,
                options.max_attempts,
                reconciler,
                recreate_missing=options.recreate_missing,
            )
            for payload, outcome in zip(group, outcomes, strict=True):
                on_outcome(payload, outcome)

    await asyncio.gather(*(worker() for _ in range(BATCHES_IN_FLIGHT)))
    reconciler.rate_limited = pace.rate_limited
    return reconciler


async def deliver_batch(
    client: IvvyClient,
    group: list[Payload],
    pace: Pace,
    max_attempts: int,
    reconciler: Reconciler,
    *,
    recreate_missing: bool = False,
) -> list[Outcome]:
    """One batch of rows, sent and retried as safely as single rows are; an outcome per row.
    A row whose update became a create (``recreate_missing``) is replaced in ``group``."""
    outcomes: list[Outcome | None] = [None] * len(group)
    notes: dict[int, tuple[str, ...]] = {}
    pending = list(range(len(group)))
    first_sent = datetime.now(UTC)
    last: Exception | None = None

    async def look_up(indexes: list[int]) -> list[int]:
        """Creates among ``indexes`` that a look-up finds are done; the others come back."""
        still = []
        for i in indexes:
            found = None
            if not group[i].is_update:
                found = await reconciler.find(group[i].params, first_sent)
            if found is None:
                still.append(i)
            else:
                outcomes[i] = found_outcome(found)
        return still

    for attempt in range(1, max_attempts + 1):
        wait = backoff(attempt)
        answer = None
        async with pace.slot() as slot:
            try:
                jobs = [_job(group[i]) for i in pending]
                answer = await client.call("batch", "run", {"jobs": jobs})
            except RateLimited as exc:
                slot.rate_limited, slot.retry_after, last = True, exc.retry_after, exc
            except (ServerError, TransportError) as exc:
                last = exc
            except ApiError as exc:  # the batch itself refused: every row of it fails so
                for i in pending:
                    outcomes[i] = _failed(group[i], exc)
                pending = []
        if answer is None and isinstance(last, RateLimited):
            wait = last.retry_after if last.retry_after is not None else wait
        elif answer is None and pending:
            # The batch may have been queued: let it run out before looking its rows up.
            await _settle(reconciler, [group[i] for i in pending if not group[i].is_update],
                          first_sent)  # fmt: skip
            pending = await look_up(pending)
        elif answer is not None:
            async_id = str(answer.get("asyncId"))
            results = await _batch_results(client, async_id, pace, max_attempts)
            retry, again = [], []
            for i, result in zip(pending, results, strict=False):
                response = result.get("response") or {}
                if response.get("success") and "id" in response:
                    task_id = int(response["id"])
                    reconciler.own(task_id)
                    outcomes[i] = _done(group[i], task_id, notes.get(i, ()))
                elif int(response.get("errorCode") or 500) >= 500:
                    retry.append(i)  # a server error: it may have been done
                elif _recreate(group[i], error := _job_error(response), recreate_missing):
                    notes[i] = (_gone(group[i]),)
                    group[i] = _as_create(group[i])
                    again.append(i)
                else:
                    outcomes[i] = _failed(group[i], error)
            pending = again + (await look_up(retry) if retry else [])
            if again and len(pending) == len(again):
                continue  # nothing to wait for: the new creates go at once
        if not pending:
            break
        await asyncio.sleep(wait)
    for i in pending:
        outcomes[i] = _gave_up(last, max_attempts)
    return [o for o in outcomes if o is not None]


#: How long a batch whose ``run`` answer was lost may take to show it ran, and how long the
#: account's task count must stay still before it is taken as done (or never queued).
BATCH_SETTLE = 60.0
BATCH_NO_SIGN = 2.0


async def _settle(reconciler: Reconciler, creates: list[Payload], first_sent: datetime) -> None:
    """Wait until a batch whose answer was lost has run: its last create exists, or the
    account's task count has stopped moving for a while (the batch ran, with failures, or was
    never queued)."""
    if not creates:
        return
    last = creates[-1].params
    began = still_since = time.monotonic()
    count = None
    while time.monotonic() - began < BATCH_SETTLE:
        if await reconciler.peek(last, first_sent) is not None:
            return
        now_count = await reconciler.task_count()
        if now_count != count:
            count, still_since = now_count, time.monotonic()
        elif time.monotonic() - still_since > BATCH_NO_SIGN:
            return
        await asyncio.sleep(0.25)


async def _batch_results(
    client: IvvyClient, async_id: str, pace: Pace, max_attempts: int
) -> list[dict[str, Any]]:
    """The batch's job results, in job order, once it has run. ``results`` is asked until it
    stops answering "not completed yet" (24114): asking ``progress`` first would only double the
    requests, which count against the rate limit. Each question takes its turn in ``pace`` with
    the batches sent, so that questions and batches together keep to the server's limit."""
    delay = 0.05
    failures = 0
    while True:
        wait = delay
        async with pace.slot() as slot:
            try:
                answer = await client.call("batch", "results", {"async": async_id}, retry=False)
                return list(answer.get("results") or [])
            except RateLimited as exc:
                slot.rate_limited, slot.retry_after = True, exc.retry_after
                wait = exc.retry_after if exc.retry_after is not None else backoff(1)
            except (ServerError, TransportError) as exc:  # a read: safe to ask again
                failures += 1
                if failures >= max_attempts:
                    raise exc from None
                wait = backoff(failures)
            except ApiError as exc:
                if exc.specific_code != 24114:
                    raise
                delay = min(1.0, delay * 1.5)
        await asyncio.sleep(wait)


def _job_error(response: dict[str, Any]) -> ApiError:
    extra = response.get("additionalMessages") or []
    return ApiError(
        error_code=int(response.get("errorCode") or 400),
        specific_code=response.get("specificCode"),
        message=str(response.get("message") or ""),
        additional_messages=[str(m) for m in (extra if isinstance(extra, list) else [extra])],
        action="crm.addOrUpdateTask",
    )
