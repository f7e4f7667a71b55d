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

from .client import ApiError, IvvyClient, RateLimited, ServerError, TransportError
from .fields import FIELDS_BY_NAME
from .model import Outcome, Payload
from .reconcile import Reconciler, SameTaskLock, signature

#: The parameter each "does not exist" code is about.
_CODE_FIELD = {24389: "leadId", 24390: "contactId", 24391: "companyId", 24392: "id"}
_QUOTED = re.compile(r"'(\w+)'")
_STALE = 23005


@dataclass(frozen=True, slots=True)
class SendOptions:
    """``concurrency``: rows in flight at once; ``max_attempts``: tries per row for answers
    that are safe to retry."""

    concurrency: int = 8
    max_attempts: int = 8


class Pacer:
    """One pause shared by every worker: a 429 seen by one slows them all."""

    def __init__(self) -> None:
        self._resume_at = 0.0

    def pause(self, seconds: float) -> None:
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    async def wait(self) -> None:
        while (delay := self._resume_at - time.monotonic()) > 0:
            await asyncio.sleep(delay)


def backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1-based): exponential, capped at 10 s, with jitter."""
    return min(10.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)


async def send_all(
    client: IvvyClient,
    payloads: Iterable[Payload],
    on_outcome: Callable[[Payload, Outcome], None],
    options: SendOptions = SendOptions(),
    reconciler: Reconciler | None = None,
) -> Reconciler:
    """Deliver every payload; ``on_outcome`` is called once per payload as its outcome is known.

    Payloads are pulled lazily, so only ``concurrency`` of them are held at a time. Returns the
    reconciler, which counts the look-ups made for lost answers.
    """
    pacer = Pacer()
    source: Iterator[Payload] = iter(payloads)
    reconciler = reconciler or Reconciler(client)
    alike = SameTaskLock()

    async def worker() -> None:
        for payload in source:
            async with alike.hold(signature(payload.params)):
                outcome = await deliver(client, payload, pacer, options.max_attempts, reconciler)
            on_outcome(payload, outcome)

    await asyncio.gather(*(worker() for _ in range(max(1, options.concurrency))))
    return reconciler


async def deliver(
    client: IvvyClient,
    payload: Payload,
    pacer: Pacer,
    max_attempts: int,
    reconciler: Reconciler | None = None,
) -> Outcome:
    """Send one payload, retrying only what is safe to retry; its outcome."""
    reconciler = reconciler or Reconciler(client)
    creating = not payload.is_update
    first_sent: datetime | None = None
    last: Exception | None = None
    for attempt in range(1, max_attempts + 1):
        await pacer.wait()
        first_sent = first_sent or datetime.now(UTC)
        try:
            task_id = await client.add_or_update_task(payload.params)
        except RateLimited as exc:  # refused before anything was done
            pacer.pause(exc.retry_after if exc.retry_after is not None else backoff(attempt))
            last = exc
            continue
        except (ServerError, TransportError) as exc:
            last = exc
            written = not isinstance(exc, TransportError) or exc.maybe_processed
            if creating and written:
                found = await reconciler.find(payload.params, first_sent)
                if found is not None:
                    note = "iVvy's answer was lost; the task it made was found and kept"
                    return Outcome("created", task_id=found, warnings=(note,))
        except ApiError as exc:
            if exc.specific_code != _STALE:
                return _failed(payload, exc)
            last = exc  # refused before anything was done; a fresh signature will do
        else:
            reconciler.own(task_id)
            return Outcome("updated" if payload.is_update else "created", task_id=task_id)
        await asyncio.sleep(backoff(attempt))
    return Outcome(
        "failed",
        error_code=last.code if isinstance(last, ApiError) else "RETRIES_EXHAUSTED",
        message=f"gave up after {max_attempts} attempts: {last}",
    )


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
