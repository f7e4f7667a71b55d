"""Reconcile: find the task a create made when its answer was lost.

A create whose answer never came (the connection dropped, a timeout, a 5xx) may have been written.
Before it is sent again, the task is looked up: ``getTaskList`` filtered by name (a filter the
server may ignore: every record is matched here), matched on the name, the due date and every other
field the row sent, created since the row was first sent (with room for the clocks' difference),
and not already the task of another row of this run. Rows that such a look-up could confuse (same
name, due date and parent) are never in flight at the same time (:class:`SameTaskLock`), so at most
one task can match.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from .client import IvvyClient
from .fields import TIMESTAMP_FORMAT

#: How far iVvy's clock may be from ours (it refuses requests further off than this).
CLOCK_SLACK = timedelta(minutes=5)
_COMPARED = (
    "leadId",
    "companyId",
    "venueId",
    "assignedUserId",
    "priority",
    "status",
    "description",
)


def signature(params: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a look-up matches on first: two creates with the same one could be confused."""
    return (
        params.get("name"),
        params.get("endDatetime"),
        params.get("leadId"),
        params.get("contactId"),
        params.get("companyId"),
    )


def _moment(text: Any) -> datetime | None:
    try:
        return datetime.strptime(str(text)[:19], TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def matches(task: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """Whether ``task`` (as getTaskList lists it) is what creating ``params`` would store."""
    if task.get("name") != params.get("name"):
        return False
    if str(task.get("endDatetime") or "").removesuffix(" UTC") != params.get("endDatetime"):
        return False
    for name in _COMPARED:
        if name in params and task.get(name) != params[name]:
            return False
    if "contactId" in params:
        contact = params["contactId"]
        # With a company too, iVvy files the task under the company, the contact beside it.
        if task.get("contactId") != contact and task.get("companyContactId") != contact:
            return False
    return True


class Reconciler:
    """Looks up lost creates; remembers which tasks rows of this run already own."""

    def __init__(self, client: IvvyClient) -> None:
        self._client = client
        self._owned: set[int] = set()
        #: Look-ups made, and tasks found by them, for the summary and the tests.
        self.lookups = 0
        self.found = 0
        #: 429s met while sending (set by the send stage).
        self.rate_limited = 0

    def own(self, task_id: int) -> None:
        """Note that a row of this run created or updated ``task_id``."""
        self._owned.add(task_id)

    async def find(self, params: Mapping[str, Any], first_sent: datetime) -> int | None:
        """The id of the task a create of ``params`` made at or after ``first_sent``, if any,
        now owned by that row.

        The look-up itself is a read, retried by the client through transient failures.
        """
        ident = await self.peek(params, first_sent)
        if ident is not None:
            self.own(ident)
            self.found += 1
        return ident

    async def task_count(self) -> int | None:
        """How many tasks the account has (one small read), to see whether a batch still runs."""
        page = await self._client.call("crm", "getTaskList", {"perPage": 1, "start": 0})
        total = (page.get("meta") or {}).get("totalResults") if isinstance(page, dict) else None
        return total if isinstance(total, int) else None

    async def peek(self, params: Mapping[str, Any], first_sent: datetime) -> int | None:
        """Like :meth:`find`, without taking the task: whether it is there yet."""
        self.lookups += 1
        since = first_sent - CLOCK_SLACK
        found = []
        async for task in self._client.iter_collection(
            "crm", "getTaskList", filter={"name": params.get("name")}
        ):
            ident = int(task["id"])
            created = _moment(task.get("createdDate"))
            if ident in self._owned or (created is not None and created < since):
                continue
            if matches(task, params):
                found.append(ident)
        if not found:
            return None
        # Rows alike are never in flight together (SameTaskLock), so more than one match means
        # someone else made the same task meanwhile: the newest is the one this row made.
        return max(found)


class SameTaskLock:
    """One lock per task signature, held while a create is in flight, kept only while used."""

    def __init__(self) -> None:
        self._locks: dict[tuple[Any, ...], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: tuple[Any, ...]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
