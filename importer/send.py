"""Send: deliver payloads to ``crm?action=addOrUpdateTask`` concurrently, and know each outcome.

A fixed number of workers; a 429 pauses every worker for the server's ``Retry-After`` (or a
backoff). Answers that certainly changed nothing (429, a refused connection, a stale date) are
retried. A create whose answer was lost or was a server error may have been written: it is looked
up (:mod:`importer.reconcile`) before it is sent again, so it is created once. Updates set the
same values again and are simply retried. API refusals with a specific code are final.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from .client import ApiError, AuthError, IvvyClient, RateLimited, ServerError, TransportError
from .fields import (
    BATCH_NOT_DONE,
    BATCH_PENDING,
    FIELDS_BY_NAME,
    INTERRUPTED,
    NO_COMPANY,
    NO_CONTACT,
    NO_LEAD,
    NO_TASK,
    NOT_SAVED,
    RETRIES_EXHAUSTED,
    STALE,
    UNSETTLED,
)
from .model import Outcome, Payload
from .pace import Pace
from .reconcile import SETTLE, Reconciler, SameTaskLock, signature

#: Where the importer says ``callbackUrl`` is: ``.invalid`` never resolves (RFC 2606), so iVvy's
#: POST goes nowhere; the importer polls ``batch?action=results`` instead.
DEFAULT_CALLBACK = "https://batch-done.ivvy-task-importer.invalid/"

#: The parameter each "does not exist" code is about.
_CODE_FIELD = {NO_LEAD: "leadId", NO_CONTACT: "contactId", NO_COMPANY: "companyId", NO_TASK: "id"}
_QUOTED = re.compile(r"'(\w+)'")


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
    #: How long a lost create waits before it is looked up: the bound on late writes and
    #: lagging list reads (:mod:`importer.reconcile`).
    settle: float = SETTLE
    #: Batch mode: the ``callbackUrl`` sent with each batch (iVvy POSTs to it when the batch has
    #: run; the importer polls instead, so the default is an address that never resolves).
    callback_url: str = DEFAULT_CALLBACK
    #: Batch mode: how long a batch may take to complete before its rows are given up for this
    #: run (reported, left in the journal for the next run to settle through the batch API).
    batch_wait: float = 300.0
    #: ``rows``: one request a row; ``batch``: up to 200 rows a request (``batch?action=run``).
    via: str = "rows"


def backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1-based): exponential, capped at 10 s, with jitter."""
    return min(10.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)


#: Outcomes whose row stays in flight in the journal: it may be in iVvy, and the next run
#: settles it (looks it up, or asks the batch API) before anything of it is sent again.
KEEP_IN_FLIGHT = frozenset({INTERRUPTED, UNSETTLED, BATCH_PENDING})


class SessionEnded(Exception):
    """iVvy ended the session (462 Session Expired, 463 Key Revoked): the run stops at once."""

    def __init__(self, error: ApiError) -> None:
        self.error = error
        super().__init__(str(error))


@dataclass
class SendStats:
    """What the send stage met, for the summary."""

    rate_limited: int = 0
    session_ended: ApiError | None = None


async def send_all(
    client: IvvyClient,
    payloads: Iterable[Payload],
    on_outcome: Callable[[Payload, Outcome], None],
    options: SendOptions = SendOptions(),
    reconciler: Reconciler | None = None,
    stop: asyncio.Event | None = None,
    stats: SendStats | None = None,
) -> SendStats:
    """Deliver every payload; ``on_outcome`` is called once per payload as its outcome is known
    (and ``stats``, when given, counts the 429 answers as they come: a progress report reads it).

    Payloads are pulled lazily, so only ``concurrency`` of them are held at a time (and the
    creates whose answers were lost, while a look-up settles them, without holding a worker).
    When ``stop`` is set, no new row is taken; rows in flight get ``options.grace`` seconds to
    finish, and a row still in flight then is ``failed`` with ``INTERRUPTED`` (it may or may not
    be in iVvy: never reported as done). When iVvy ends the session (462/463) the run stops at
    once: rows not sent are left unsent (``skipped``), and the stats say why.
    """
    pace = Pace(ceiling=options.rate, concurrency=options.concurrency)
    source: Iterator[Payload] = iter(payloads)
    reconciler = reconciler or Reconciler(client, settle=options.settle)
    alike = SameTaskLock()
    stop = stop or asyncio.Event()
    stats = stats if stats is not None else SendStats()
    on_outcome = _counting(on_outcome, stats, pace)
    parked: set[asyncio.Future[None]] = set()

    def ended(exc: SessionEnded) -> None:
        stats.session_ended = stats.session_ended or exc.error
        stop.set()

    async def finish(state: _Row, key: tuple[Any, ...]) -> None:
        """A lost create, settled off the worker: looked up, then sent again if not found."""
        try:
            outcome = await _go_on(client, state, pace, options, reconciler)
        except SessionEnded as exc:
            ended(exc)
            on_outcome(state.payload, _not_sent(exc.error))
        except asyncio.CancelledError:
            on_outcome(state.payload, _interrupted())
        else:
            on_outcome(state.payload, outcome)
        finally:
            alike.release(key)

    #: An exception that is not a row's outcome (the journal lost, a bug): every worker stops
    #: taking rows, and it is raised once the rows in flight are answered.
    broken: list[BaseException] = []

    async def worker() -> None:
        try:
            await rows()
        except Exception as exc:
            broken.append(exc)

    async def rows() -> None:
        for payload in source:
            if stop.is_set() or broken:
                return
            key = signature(payload.params)
            await alike.acquire(key)
            state = _Row(payload)
            try:
                outcome = await _attempts(client, state, pace, options, reconciler, park=True)
            except _Parked:
                task = asyncio.ensure_future(finish(state, key))
                parked.add(task)
                task.add_done_callback(parked.discard)
                continue
            except SessionEnded as exc:
                alike.release(key)
                ended(exc)
                on_outcome(payload, _not_sent(exc.error))
                return
            except asyncio.CancelledError:
                # The stop's grace is over and this row is still in flight.
                alike.release(key)
                on_outcome(payload, _interrupted())
                return
            alike.release(key)
            on_outcome(payload, outcome)

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, options.concurrency))]
    stopping = asyncio.ensure_future(stop.wait())
    try:
        # (Gathered with their exceptions: none is left for nobody to take.)
        ending: list[asyncio.Future[Any]] = [
            stopping, asyncio.gather(*workers, return_exceptions=True)
        ]  # fmt: skip
        await asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set() and parked:
            # Every row was taken; the lost creates still waiting for their look-up finish now.
            ending = [stopping, asyncio.gather(*parked, return_exceptions=True)]
            await asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            # No new row is taken; the rows in flight get the grace to finish, then are
            # reported. (After an ended session too: their answers come at once, and say so.)
            busy = [*workers, *parked]
            if busy:
                _, late = await asyncio.wait(busy, timeout=options.grace)
                for task in late:
                    task.cancel()
    except asyncio.CancelledError:
        # Stopped at once (a second Ctrl-C): every row in flight is ended here, and reported
        # (interrupted), before the cancel goes on; nothing is left running unawaited.
        stopping.cancel()
        for task in (*workers, *parked):
            task.cancel()
        await asyncio.gather(*workers, *parked, return_exceptions=True)
        raise
    done = await asyncio.gather(*workers, *parked, return_exceptions=True)
    stopping.cancel()
    stats.rate_limited = pace.rate_limited
    broken += [e for e in done if isinstance(e, Exception)]
    if broken:
        raise broken[0]
    return stats


def _interrupted() -> Outcome:
    return Outcome(
        "failed",
        error_code=INTERRUPTED,
        message="interrupted while this row was being sent: it may or may not be in iVvy; "
        "check before importing it again",
    )


def _not_sent(error: ApiError) -> Outcome:
    return Outcome(
        "skipped",
        error_code=error.code,
        message=f"not sent: iVvy ended the session ({error.full_message}); nothing of this row "
        "was saved",
    )


class _Parked(Exception):
    """A create's answer was lost: it is to be settled off the worker."""


@dataclass
class _Row:
    """One row on its way: what is sent now, and what its attempts so far have met."""

    payload: Payload
    attempt: int = 0
    first_sent: datetime | None = None
    last: Exception | None = None
    notes: tuple[str, ...] = ()


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
    ``recreate_missing``, an update of a task that no longer exists becomes a create.
    A lost create is settled in place (:meth:`Reconciler.settle`) before anything else."""
    options = SendOptions(max_attempts=max_attempts, recreate_missing=recreate_missing)
    reconciler = reconciler or Reconciler(client)
    return await _attempts(client, _Row(payload), pace, options, reconciler, park=False)


async def _go_on(
    client: IvvyClient, state: _Row, pace: Pace, options: SendOptions, reconciler: Reconciler
) -> Outcome:
    """A parked row: the look-up of its lost create, then (not found) its attempts go on."""
    assert state.first_sent is not None
    found = await reconciler.settle(state.payload.params, state.first_sent)
    if found is not None:
        return found
    await asyncio.sleep(backoff(state.attempt))
    return await _attempts(client, state, pace, options, reconciler, park=False)


async def _attempts(
    client: IvvyClient,
    state: _Row,
    pace: Pace,
    options: SendOptions,
    reconciler: Reconciler,
    *,
    park: bool,
) -> Outcome:
    """The row's attempts from where it is; with ``park``, a lost create raises
    :class:`_Parked` instead of waiting here for its look-up."""
    while state.attempt < options.max_attempts:
        state.attempt += 1
        wait = backoff(state.attempt)
        payload = state.payload
        state.first_sent = state.first_sent or datetime.now(UTC)
        last: Exception | None = None
        async with pace.slot() as slot:
            try:
                with reconciler.sending(payload.params):
                    sent = time.time()
                    task_id = await client.add_or_update_task(payload.params)
            except RateLimited as exc:  # refused before anything was done
                if exc.from_gateway:
                    slot.overloaded = True
                elif not exc.busy:  # 24299 is a race on iVvy's side, not a rate
                    slot.rate_limited = True
                    slot.retry_after = exc.retry_after
                last = exc
            except AuthError as exc:
                if exc.ends_session:
                    raise SessionEnded(exc) from None
                last = exc
            except ServerError as exc:
                slot.overloaded = exc.overloaded  # a 503 may say to slow down too
                last = exc
            except (TransportError, ApiError) as exc:
                last = exc
            else:
                reconciler.own(task_id, sent, made=not payload.is_update)
                return _done(payload, task_id, state.notes)
        state.last = last
        if isinstance(last, RateLimited):
            wait = last.retry_after if last.retry_after is not None else wait
        elif isinstance(last, ServerError | TransportError):
            written = not isinstance(last, TransportError) or last.maybe_processed
            if not payload.is_update and written:
                if park:
                    raise _Parked
                found = await reconciler.settle(payload.params, state.first_sent)
                if found is not None:
                    return found
        elif isinstance(last, ApiError) and _recreate(payload, last, options.recreate_missing):
            state.notes = (_gone(payload),)
            state.payload = _as_create(payload)
            continue
        elif isinstance(last, ApiError) and last.specific_code != STALE:
            return _failed(payload, last)  # a refusal with a reason: final
        await asyncio.sleep(wait)
    return _gave_up(state.last, options.max_attempts)


def _done(payload: Payload, task_id: int, warnings: tuple[str, ...]) -> Outcome:
    """The outcome of a row iVvy accepted."""
    return Outcome("updated" if payload.is_update else "created", task_id=task_id,
                   warnings=warnings)  # fmt: skip


def _recreate(payload: Payload, exc: ApiError, recreate_missing: bool) -> bool:
    """Whether an update refused because its task is gone is to become a create."""
    return recreate_missing and payload.is_update and exc.specific_code == NO_TASK


def _gone(payload: Payload) -> str:
    return (
        f"task {payload.params['id']} no longer exists in iVvy: created again (--recreate-missing)"
    )


def _as_create(payload: Payload) -> Payload:
    return payload._replace(params={k: v for k, v in payload.params.items() if k != "id"})


def _failed(payload: Payload, exc: ApiError, message: str | None = None) -> Outcome:
    text = message or exc.full_message
    if payload.is_update and exc.specific_code == NO_TASK:
        text += (
            f" (task {payload.params['id']} was deleted in iVvy: give --recreate-missing to "
            "create it again)"
        )
    return Outcome("failed", error_code=exc.code, field=_field_of(payload, exc), message=text)


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
        error_code=last.code if isinstance(last, ApiError) else RETRIES_EXHAUSTED,
        message=f"gave up after {attempts} attempts: {last}",
    )


def _job(payload: Payload) -> dict[str, Any]:
    return {"namespace": "crm", "action": "addOrUpdateTask", "params": dict(payload.params)}


def _counting(
    on_outcome: Callable[[Payload, Outcome], None], stats: SendStats, pace: Pace
) -> Callable[[Payload, Outcome], None]:
    """``on_outcome``, with ``stats`` brought up to date with the pace's 429s first."""

    def counted(payload: Payload, outcome: Outcome) -> None:
        stats.rate_limited = pace.rate_limited
        on_outcome(payload, outcome)

    return counted


async def send_batches(
    client: IvvyClient,
    payloads: Iterable[Payload],
    on_outcome: Callable[[Payload, Outcome], None],
    options: SendOptions = SendOptions(),
    reconciler: Reconciler | None = None,
    stop: asyncio.Event | None = None,
    on_batch: Callable[[str, list[Payload]], None] | None = None,
    stats: SendStats | None = None,
) -> SendStats:
    """Deliver every payload through ``batch?action=run``, up to 200 a request, a few batches in
    flight, each with ``options.callback_url``. ``on_batch(async_id, rows)`` hears of each batch
    iVvy queued, before anything else is done with it (the journal keeps the id, so a run killed
    while the batch runs can ask the batch API). Each result goes back to its job's row by the
    ``request`` it carries, never by position. A job answered with a server error, or left out of
    the results, may have run: its create is looked up before it is sent again. A batch whose
    ``run`` answer was lost, or that does not complete within ``options.batch_wait``, is never sent
    again in this run: its rows end ``BATCH_PENDING`` (unless a look-up finds their tasks), left
    in flight for the next run to settle. ``stop`` stops taking rows."""
    pace = Pace(ceiling=options.rate, concurrency=BATCHES_IN_FLIGHT)
    source: Iterator[Payload] = iter(payloads)
    reconciler = reconciler or Reconciler(client, settle=options.settle)
    stop = stop or asyncio.Event()
    stats = stats if stats is not None else SendStats()
    on_outcome = _counting(on_outcome, stats, pace)

    async def worker() -> None:
        while not stop.is_set():
            group = list(islice(source, BATCH_SIZE))
            if not group:
                return
            try:
                outcomes = await deliver_batch(
                    client, group, pace, options, reconciler, on_batch=on_batch
                )
            except SessionEnded as exc:
                stats.session_ended = stats.session_ended or exc.error
                stop.set()
                outcomes = [_not_sent(exc.error)] * len(group)
            for payload, outcome in zip(group, outcomes, strict=True):
                on_outcome(payload, outcome)

    await asyncio.gather(*(worker() for _ in range(BATCHES_IN_FLIGHT)))
    stats.rate_limited = pace.rate_limited
    return stats


def job_key(params: Mapping[str, Any]) -> str:
    """What identifies a job's ``request`` in the results: its parameters, canonically."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def match_results(
    results: Iterable[Mapping[str, Any]], jobs: Iterable[tuple[Any, Mapping[str, Any]]]
) -> dict[Any, dict[str, Any]]:
    """Each batch result's ``response``, given to the job (``(its handle, its params)``) whose
    params its ``request`` carries, never by position; jobs left out of the results are absent
    (alike jobs take alike results in turn)."""
    by_request: dict[str, list[Any]] = {}
    for handle, params in jobs:
        by_request.setdefault(job_key(params), []).append(handle)
    answered: dict[Any, dict[str, Any]] = {}
    for result in results:
        request = result.get("request") if isinstance(result, dict) else None
        waiting = by_request.get(job_key(request)) if isinstance(request, dict) else None
        if waiting:
            answered[waiting.pop(0)] = result.get("response") or {}
    return answered


def job_verdict(response: Mapping[str, Any] | None) -> str:
    """What one job's response says: ``done`` (with its ``id``), ``not_saved`` (``success:
    false``), ``unknown`` (no answer, or a server error: it may have run), ``not_run`` (429:
    refused before anything was done) or ``refused`` (an error with a reason)."""
    if response is None:
        return "unknown"
    if response.get("success") is True and "id" in response:
        return "done"
    if response.get("success") is False and "errorCode" not in response:
        return "not_saved"
    code = int(response.get("errorCode") or 500)
    if code >= 500:
        return "unknown"
    return "not_run" if code == 429 else "refused"


def not_saved(response: Mapping[str, Any]) -> Outcome:
    message = str(response.get("message") or "iVvy answered success: false")
    return Outcome("failed", error_code=NOT_SAVED, message=message)


def batch_pending(why: str) -> Outcome:
    return Outcome(
        "failed",
        error_code=BATCH_PENDING,
        message=f"{why}: its rows may still be carried out by iVvy, so they are not sent again "
        "now; run the same source again with --resume to settle them (it asks the batch API, or "
        "looks them up) and send only those not in iVvy",
    )


async def deliver_batch(
    client: IvvyClient,
    group: list[Payload],
    pace: Pace,
    options: SendOptions,
    reconciler: Reconciler,
    *,
    on_batch: Callable[[str, list[Payload]], None] | None = None,
) -> list[Outcome]:
    """One batch of rows, sent and retried as safely as single rows are; an outcome per row.
    A row whose update became a create (``recreate_missing``) is replaced in ``group``."""
    outcomes: list[Outcome | None] = [None] * len(group)
    notes: dict[int, tuple[str, ...]] = {}
    pending = list(range(len(group)))
    first_sent = datetime.now(UTC)
    last: Exception | None = None

    async def look_up(indexes: list[int]) -> list[int]:
        """Creates among ``indexes`` a look-up settles are done; the others come back."""
        still = []
        settled = await asyncio.gather(
            *(
                reconciler.settle(group[i].params, first_sent)
                for i in indexes
                if not group[i].is_update
            )
        )
        found = iter(settled)
        for i in indexes:
            outcome = None if group[i].is_update else next(found)
            if outcome is None:
                still.append(i)
            else:
                outcomes[i] = outcome
        return still

    for attempt in range(1, options.max_attempts + 1):
        wait = backoff(attempt)
        answer = None
        async with pace.slot() as slot:
            sent = time.time()
            try:
                jobs = [_job(group[i]) for i in pending]
                body = {"jobs": jobs, "callbackUrl": options.callback_url}
                answer = await client.call("batch", "run", body)
            except RateLimited as exc:
                if not exc.busy:
                    slot.rate_limited, slot.retry_after = True, exc.retry_after
                last = exc
            except AuthError as exc:
                if exc.ends_session:
                    raise SessionEnded(exc) from None
                last = exc
            except (ServerError, TransportError) as exc:
                last = exc
            except ApiError as exc:  # the batch itself refused: every row of it fails so
                for i in pending:
                    outcomes[i] = _failed(group[i], exc)
                pending = []
        if answer is None and isinstance(last, RateLimited):
            wait = last.retry_after if last.retry_after is not None else wait
        elif answer is None and isinstance(last, AuthError):
            for i in pending:
                outcomes[i] = _failed(group[i], last)
            pending = []
        elif answer is None and pending:
            written = not isinstance(last, TransportError) or last.maybe_processed
            if written:
                # iVvy may have queued the batch: look its creates up, and send none of it again.
                for i in await look_up(pending):
                    outcomes[i] = batch_pending(f"the answer to the batch was lost ({last})")
                pending = []
        elif answer is not None:
            async_id = str(answer.get("asyncId"))
            if on_batch is not None:
                on_batch(async_id, [group[i] for i in pending])
            try:
                results = await _batch_results(client, async_id, pace, options)
            except _BatchLate:
                for i in pending:
                    outcomes[i] = batch_pending(
                        f"batch {async_id} did not complete within {options.batch_wait:.0f} s"
                    )
                pending = []
                break
            answered = match_results(results, ((i, group[i].params) for i in pending))
            retry, again = [], []
            for i in pending:
                response = answered.get(i)
                verdict = job_verdict(response)
                if verdict == "unknown" or response is None:
                    retry.append(i)  # left out, or a server error: it may have run
                elif verdict == "done":
                    task_id = int(response["id"])
                    reconciler.own(task_id, sent, made=not group[i].is_update)
                    outcomes[i] = _done(group[i], task_id, notes.get(i, ()))
                elif verdict == "not_saved":
                    outcomes[i] = not_saved(response)
                elif verdict == "not_run":
                    again.append(i)  # refused before anything was done
                elif _recreate(group[i], error := job_error(response), options.recreate_missing):
                    notes[i] = (_gone(group[i]),)
                    group[i] = _as_create(group[i])
                    again.append(i)
                else:
                    outcomes[i] = _failed(group[i], error)
            pending = again + (await look_up(retry) if retry else [])
            if again and len(pending) == len(again):
                continue  # nothing to wait for: the rows go again at once
        if not pending:
            break
        await asyncio.sleep(wait)
    for i in pending:
        outcomes[i] = _gave_up(last, options.max_attempts)
    return [o for o in outcomes if o is not None]


class _BatchLate(Exception):
    """A batch did not complete in the time allowed."""


async def _batch_results(
    client: IvvyClient, async_id: str, pace: Pace, options: SendOptions
) -> list[dict[str, Any]]:
    """The batch's job results (in whatever order iVvy gives them), once it has run;
    :class:`_BatchLate` after ``options.batch_wait`` seconds of "not completed yet" (24114).
    ``results`` is asked until it stops answering 24114: asking ``progress`` first would only
    double the requests, which count against the rate limit. Each question takes its turn in
    ``pace`` with the batches sent, so that questions and batches together keep to the limit."""
    delay = 0.05
    failures = 0
    deadline = time.monotonic() + options.batch_wait
    while True:
        wait = delay
        async with pace.slot() as slot:
            try:
                answer = await client.call("batch", "results", {"async": async_id}, retry=False)
                results = answer.get("results") if isinstance(answer, dict) else None
                return [r for r in results or [] if isinstance(r, dict)]
            except RateLimited as exc:
                if not exc.busy:
                    slot.rate_limited, slot.retry_after = True, exc.retry_after
                wait = exc.retry_after if exc.retry_after is not None else backoff(1)
            except AuthError as exc:
                if exc.ends_session:
                    raise SessionEnded(exc) from None
                raise
            except (ServerError, TransportError) as exc:  # a read: safe to ask again
                failures += 1
                if failures >= options.max_attempts:
                    raise _BatchLate from exc
                wait = backoff(failures)
            except ApiError as exc:
                if exc.specific_code != BATCH_NOT_DONE:
                    raise _BatchLate from exc  # 24115 (no such batch) and the like: unknown
                delay = min(1.0, delay * 1.5)
        if time.monotonic() + wait > deadline:
            raise _BatchLate
        await asyncio.sleep(wait)


def job_error(response: Mapping[str, Any]) -> ApiError:
    extra = response.get("additionalMessages") or []
    return ApiError(
        error_code=int(response.get("errorCode") or 400),
        specific_code=response.get("specificCode"),
        message=str(response.get("message") or ""),
        additional_messages=[str(m) for m in (extra if isinstance(extra, list) else [extra])],
        action="crm.addOrUpdateTask",
    )
