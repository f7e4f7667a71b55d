"""Reconcile: find the task a create made when its answer was lost, and never a task it did not
make.

A create whose answer never came (the connection dropped, a timeout, a 5xx) may have been written,
now or (a late write) a little later. It is not sent again until a look-up that can be trusted
says it is not there; and a look-up never takes a task that existed before the row was sent, nor
one that another writer made. Where it cannot tell, the row ends ``failed`` with ``AMBIGUOUS`` and
the candidate task ids: a person decides, nothing is sent twice.

Why the rule is safe (what it assumes is said as such):

1. **Time, on iVvy's clock.** A task the row made was created between the row's first send and
   its last lost answer plus ``settle`` (the time a late write may take to land). Candidates are
   tasks whose ``createdDate`` falls in that window, read on iVvy's clock: the client measures the
   offset between the clocks (``IvvyClient.clock_offset``), and the window has ``SLACK`` seconds
   on each side for the whole seconds of iVvy's timestamps. Tasks made before the row was sent
   (an account seeded with tasks identical to the sheet, an earlier import) are outside it.
2. **Content, as iVvy rewrote it.** iVvy stores text as HTML (``<p>…</p>``, entities): a stored
   name or description matches what was sent when it reads the same as text (:func:`same_text`).
3. **Ownership.** Ids answered to this run (and, at the start of a run, ids the journal holds) are
   never candidates; a task is taken by at most one row.
4. **Other writers.** Content and time cannot tell our lost task from an identical one another
   writer made in the same window. So every look-up lists *all* tasks created since the window
   opened, and any task in it that this run cannot explain (not answered to it, not like a row of
   it in flight or lost) shows that someone else is writing to the account. From then on a lost
   create with any candidate is ``AMBIGUOUS``; without a candidate it is sent again. Without such
   signs, candidates are given to the lost rows like them (oldest first); more candidates than
   rows is ``AMBIGUOUS`` too. (A writer that only ever made exact copies of our rows, and nothing
   else, would not be seen: the residual case.)
5. **Lagging reads and late writes.** A look-up waits ``settle`` seconds after the last lost
   answer (the documented bound on late writes and read lag), and is trusted only if every task
   this run was answered since the window opened shows in it: a missing one means the list lags,
   and the look-up is made again later.

Rows alike (same name, due date and parent) are never in flight together (:class:`SameTaskLock`),
so in a run at most one row can claim a candidate.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .client import IvvyClient, IvvyError
from .fields import AMBIGUOUS, TIMESTAMP_FORMAT, UNSETTLED
from .model import Outcome

#: How long after a lost answer a late write may still land, and how far list reads may lag.
SETTLE = 8.0
#: Room on iVvy's clock on either side of a window: whole-second timestamps, a measured offset.
SLACK = 2.0
#: Look-ups at most this often (each lists every task created in its window).
LOOKUP_EVERY = 1.0
#: Failed look-ups in a row before the lost rows waiting are given up (left for the next run).
LOOKUP_TRIES = 8
#: A task answered to this run that a list has not shown for this long is taken as deleted, not
#: as a sign of lag; a lost row that no trusted look-up could settle for this long is given up.
LAG_LIMIT = 60.0

_COMPARED = ("leadId", "companyId", "venueId", "assignedUserId", "priority", "status")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_BREAK = re.compile(r"<br\s*/?>|</p>\s*<p[^>]*>", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def folded(text: Any) -> str:
    """Text with its white space folded (runs to one space, none at either end)."""
    return "" if text is None else _SPACE.sub(" ", str(text)).strip()


def plain(text: Any) -> str:
    """Stored text as a person reads it when iVvy rewrote it as HTML: tags dropped (a line
    break or a new paragraph kept as a space), entities decoded, white space folded."""
    if text is None:
        return ""
    value = str(text)
    if "<" in value:
        value = _TAG.sub("", _BREAK.sub(" ", value))
    if "&" in value:
        value = html.unescape(value)
    return folded(value)


def same_text(stored: Any, sent: Any) -> bool:
    """Whether text iVvy holds is the text that was sent: as sent (white space aside), or as
    its HTML rendering reads. Sent text is never read as HTML (``<2>`` in a name is text)."""
    want = folded(sent)
    return folded(stored) == want or plain(stored) == want


def signature(params: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a look-up matches on first: two creates with the same one could be confused."""
    return (
        folded(params.get("name")),
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


def _same_id(have: Any, want: Any) -> bool:
    try:
        return int(have) == int(want)
    except (TypeError, ValueError):
        return have == want


def same_value(task: Mapping[str, Any], name: str, value: Any) -> bool:
    """Whether ``task`` (as getTaskList lists it) holds ``value`` for field ``name`` as it
    would store it: text as sent or as its HTML reads, a due time without " UTC", ids and codes
    as numbers, and a contact given with a company filed as the company's contact."""
    held = task.get(name)
    if name in ("name", "description"):
        return same_text(held, value)
    if name == "endDatetime":
        return str(held or "").removesuffix(" UTC") == value
    if name == "contactId":
        # With a company too, iVvy files the task under the company, the contact beside it.
        return _same_id(held, value) or _same_id(task.get("companyContactId"), value)
    return _same_id(held, value)


def matches(task: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """Whether ``task`` (as getTaskList lists it) is what creating ``params`` would store."""
    compared = ("name", "endDatetime", *_COMPARED, "description", "contactId")
    return all(
        same_value(task, name, params.get(name))
        for name in compared
        if name in ("name", "endDatetime") or name in params
    )


def found_outcome(task_id: int) -> Outcome:
    """The outcome of a create whose answer was lost and whose task a look-up found."""
    note = "iVvy's answer was lost; the task it made was found and kept"
    return Outcome("created", task_id=task_id, warnings=(note,))


def ambiguous_outcome(candidates: Iterable[int]) -> Outcome:
    ids = ", ".join(str(i) for i in sorted(candidates))
    return Outcome(
        "failed",
        error_code=AMBIGUOUS,
        message=f"iVvy's answer was lost, and task(s) {ids} look like what this row made, but "
        "another writer was making tasks in the account meanwhile, so the look-up cannot tell "
        "whose they are. The row was not sent again: check those tasks in iVvy",
    )


def unsettled_outcome(why: str) -> Outcome:
    return Outcome(
        "failed",
        error_code=UNSETTLED,
        message=f"iVvy's answer was lost and the look-up could not be made ({why}): it may or "
        "may not be in iVvy; the next run into this account looks it up before sending it",
    )


@dataclass(eq=False)
class _Lost:
    """A create whose answer was lost, waiting for a look-up to say what became of it."""

    params: Mapping[str, Any]
    first_sent: float  # our clock, epoch seconds
    ended: float  # our clock: when its last answer was lost
    done: asyncio.Future[Outcome | None] = field(repr=False)


class Reconciler:
    """Looks up lost creates (in bulk, a look-up a second at most); remembers which tasks this
    run owns, which rows are in flight, and whether anyone else writes to the account."""

    def __init__(self, client: IvvyClient, *, settle: float = SETTLE) -> None:
        self._client = client
        self.settle_s = settle
        self._owned: set[int] = set()
        #: Tasks answered to this run over the last LAG_LIMIT seconds: (when the request that
        #: made each was sent, our clock; id).
        self._answered: deque[tuple[float, int]] = deque()
        self._sending: dict[int, Mapping[str, Any]] = {}
        self._lost: list[_Lost] = []
        #: Rows that may have made a task we could not place (ambiguous, or left unsettled).
        self._explained: list[Mapping[str, Any]] = []
        self._foreign: set[int] = set()
        self._worker: asyncio.Task[None] | None = None
        #: Look-ups made, lost creates found, and those left ambiguous, for the summary.
        self.lookups = 0
        self.found = 0
        self.ambiguous = 0

    @property
    def others_writing(self) -> int:
        """How many tasks this run saw that someone else made meanwhile."""
        return len(self._foreign)

    def own(self, task_id: int, sent: float | None = None, *, made: bool = True) -> None:
        """Note that a row of this run created (``made``) or updated ``task_id`` by a request
        sent at ``sent`` (our clock). Only a task this run made, at a known moment, is one a
        later look-up's list must show (the lag check): the task was made after ``sent``, and
        an answer may come long after that when this process or iVvy is slow. An updated task
        keeps its old ``createdDate`` and never shows in a list of recent tasks; a task a
        look-up found was seen already; neither may hold a look-up back as a lagging list."""
        if task_id in self._owned:
            return
        self._owned.add(task_id)
        if not made or sent is None:
            return
        now = time.time()
        self._answered.append((min(sent, now), task_id))
        while self._answered and self._answered[0][0] < now - LAG_LIMIT:
            self._answered.popleft()

    def own_all(self, task_ids: Iterable[int]) -> None:
        """Tasks rows of earlier runs made (from the journal): never candidates."""
        self._owned.update(task_ids)

    @contextmanager
    def sending(self, params: Mapping[str, Any]) -> Iterator[None]:
        """While a row is in flight: a task like it in a look-up is explained by it."""
        token = id(params)
        self._sending[token] = params
        try:
            yield
        finally:
            self._sending.pop(token, None)

    async def settle(
        self, params: Mapping[str, Any], first_sent: datetime, ended: datetime | None = None
    ) -> Outcome | None:
        """What became of a create of ``params`` first sent at ``first_sent`` whose last answer
        was lost at ``ended`` (now when None): ``created`` with the task a trusted look-up found,
        ``failed`` (``AMBIGUOUS``, or ``UNSETTLED`` when no look-up could be made), or None: not
        in iVvy, to be sent again."""
        lost = _Lost(
            params=params,
            first_sent=first_sent.timestamp(),
            ended=(ended or datetime.now(UTC)).timestamp(),
            done=asyncio.get_running_loop().create_future(),
        )
        self._lost.append(lost)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._work())
        try:
            return await asyncio.shield(lost.done)
        finally:
            if lost in self._lost:
                self._lost.remove(lost)

    async def settle_many(
        self, rows: list[tuple[Mapping[str, Any], datetime]]
    ) -> list[Outcome | None]:
        """Rows left in flight by a run that was stopped or killed (their answers may have been
        lost at any moment until now): each as :meth:`settle` says."""
        return list(await asyncio.gather(*(self.settle(p, sent) for p, sent in rows)))

    async def _work(self) -> None:
        failures = 0
        while any(not lost.done.done() for lost in self._lost):
            now = time.time()
            for lost in self._lost:
                if now > lost.ended + self.settle_s + LAG_LIMIT:
                    self._explained.append(lost.params)
                    _resolve(lost, unsettled_outcome("the account's task list kept lagging"))
            due = [
                lost
                for lost in self._lost
                if now >= lost.ended + self.settle_s and not lost.done.done()
            ]
            if not due:
                waiting = [lost.ended for lost in self._lost if not lost.done.done()]
                wait = min(waiting, default=now) + self.settle_s - now
                await asyncio.sleep(max(0.05, wait))
                continue
            # Rows that fall due within the next look-up's interval wait for it together.
            try:
                await self._look_up(due)
                failures = 0
            except IvvyError as exc:
                failures += 1
                if failures >= LOOKUP_TRIES:
                    for lost in due:
                        self._explained.append(lost.params)
                        _resolve(lost, unsettled_outcome(str(exc)))
            await asyncio.sleep(LOOKUP_EVERY)

    async def _look_up(self, due: list[_Lost]) -> None:
        """One look-up for every lost create now due: every task created since the earliest
        of them was first sent."""
        self.lookups += 1
        offset = timedelta(seconds=self._client.clock_offset)
        opened = min(lost.first_sent for lost in due)
        since = datetime.fromtimestamp(opened, UTC) + offset - timedelta(seconds=SLACK)
        began = time.time()
        listed: list[tuple[datetime, Mapping[str, Any]]] = []
        async for task in self._client.iter_collection(
            "crm",
            "getTaskList",
            filter={"createdDate__GREATERTHAN": since.strftime(TIMESTAMP_FORMAT)},
        ):
            created = _moment(task.get("createdDate"))
            # A filter the server ignores lists older tasks too: each is checked here.
            if created is not None and created >= since:
                listed.append((created, task))
        seen = {int(task["id"]) for _, task in listed}
        # The list shows every write up to ``horizon`` (our clock): the earliest task made by
        # this run since the window opened that it does not show marks how far it lags.
        recent = max(opened + SLACK, began - LAG_LIMIT)
        missing = [
            answered_at
            for answered_at, ident in self._answered
            if recent <= answered_at < began and ident not in seen
        ]
        horizon = min(missing, default=began)
        waiting = self._explained_params()
        for _, one in listed:
            ident = int(one["id"])
            if ident in self._owned or ident in self._foreign:
                continue
            if not any(matches(one, params) for params in waiting):
                self._foreign.add(ident)
        claimed: set[int] = set()
        groups: dict[tuple[Any, ...], list[_Lost]] = {}
        for lost in sorted(due, key=lambda item: item.first_sent):
            if lost.ended + self.settle_s > horizon:
                continue  # the list lags behind this row's window: look again later
            groups.setdefault(_params_key(lost.params), []).append(lost)
        for rows in groups.values():
            first = rows[0]
            start = datetime.fromtimestamp(min(r.first_sent for r in rows), UTC) + offset
            end = datetime.fromtimestamp(max(r.ended for r in rows), UTC) + offset
            low = start - timedelta(seconds=SLACK)
            high = end + timedelta(seconds=self.settle_s + SLACK)
            candidates = sorted(
                int(task["id"])
                for created, task in listed
                if low <= created <= high
                and int(task["id"]) not in self._owned
                and int(task["id"]) not in claimed
                and matches(task, first.params)
            )
            if not candidates:
                for lost in rows:
                    _resolve(lost, None)
            elif self._foreign or len(candidates) > len(rows):
                self.ambiguous += len(rows)
                claimed.update(candidates)
                for lost in rows:
                    self._explained.append(lost.params)
                    _resolve(lost, ambiguous_outcome(candidates))
            else:
                for lost, ident in zip(rows, candidates, strict=False):
                    self.own(ident, made=False)  # seen already: never a sign of lag
                    self.found += 1
                    claimed.add(ident)
                    _resolve(lost, found_outcome(ident))
                for lost in rows[len(candidates) :]:
                    _resolve(lost, None)

    def _explained_params(self) -> list[Mapping[str, Any]]:
        return [*(lost.params for lost in self._lost), *self._sending.values(), *self._explained]


def _params_key(params: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def _resolve(lost: _Lost, outcome: Outcome | None) -> None:
    if not lost.done.done():
        lost.done.set_result(outcome)


class SameTaskLock:
    """One lock per task signature, held while a create is in flight or lost (until a look-up
    settles it), kept only while used."""

    def __init__(self) -> None:
        self._locks: dict[tuple[Any, ...], tuple[asyncio.Lock, int]] = {}

    async def acquire(self, key: tuple[Any, ...]) -> None:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._drop(key)
            raise

    def release(self, key: tuple[Any, ...]) -> None:
        lock, _ = self._locks[key]
        lock.release()
        self._drop(key)

    def _drop(self, key: tuple[Any, ...]) -> None:
        lock, users = self._locks[key]
        if users == 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)
