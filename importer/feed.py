"""The feed between the checks and the send stage: rows decided, journalled in flight before they
are sent, updates put aside until the tasks they change are read (what an undo restores)."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .client import IvvyClient, IvvyError
from .directory import tasks_among
from .fields import NOT_CLEARED, UNREAD
from .journal import (
    RunJournal,
)
from .missing import conflict, edited_since
from .model import Outcome, Payload, Row
from .plan import CLEARABLE, GROUP, Decision, snapshot
from .reconcile import plain
from .send import (
    KEEP_IN_FLIGHT,
)


class _Spool:
    """Decisions held in a temporary file until they are replayed (memory stays bounded), with
    the tasks they update."""

    def __init__(self) -> None:
        self._file: Any = None
        self.count = 0
        self.tasks: set[int] = set()

    def put(self, decision: Decision) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the replay)
        pickle.dump(decision, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1
        if isinstance(decision.checked, Payload) and decision.checked.is_update:
            self.tasks.add(int(decision.checked.params["id"]))

    def __bool__(self) -> bool:
        return self.count > 0

    def replay(self) -> Iterator[Decision]:
        if self._file is None:
            return
        handle, self._file, self.count = self._file, None, 0
        handle.seek(0)
        with handle:
            while True:
                try:
                    yield pickle.load(handle)
                except EOFError:
                    return


class Feed:
    """The rows, on their way to the send stage through the journal: each group of rows is
    decided (:class:`Planner`), then written ``in_flight`` (with what it sends) before any of it
    is sent; each outcome is recorded as it comes. An update is sent with the task's values as
    they were (``before_of``, for an undo): an update whose task was not read yet is put aside
    (:attr:`later`) for :meth:`read_befores`, which reads them all at once."""

    def __init__(
        self,
        run: RunJournal,
        rows: Iterator[tuple[Row, Payload | Outcome]],
        stop: asyncio.Event,
        decide: Callable[[list[tuple[Row, Payload | Outcome]]], list[Decision]],
        *,
        before_of: Callable[[int], Mapping[str, Any] | None] | None = None,
        keep_befores: bool = True,
        written_of: Callable[[list[int]], Mapping[int, float]] | None = None,
        clock_offset: float = 0.0,
    ) -> None:
        self._run = run
        self._rows = rows
        self._stop = stop
        self._decide = decide
        self._before_of = before_of
        self._keep_befores = keep_befores
        #: When this tool last wrote each task (``None``: edits in iVvy are not looked for).
        self._written_of = written_of
        self._offset = clock_offset
        self._unsent: deque[Payload] = deque()
        self._places: dict[int, Decision] = {}
        #: Updates put aside until their tasks are read (a spool on disk, not in memory).
        self.later = _Spool()
        self._befores: dict[int, Mapping[str, Any]] = {}
        #: Updates that sent a field empty to clear it (``--blanks clear``), by task: the row,
        #: the fields, its outcome (read back by :meth:`check_cleared`).
        self.cleared: dict[int, tuple[int, tuple[str, ...], Outcome, str | None]] = {}

    def payloads(self) -> Iterator[Payload]:
        group: list[tuple[Row, Payload | Outcome]] = []
        for row, checked in self._rows:
            if self._stop.is_set():
                return
            group.append((row, checked))
            if len(group) >= GROUP:
                self._admit(self._decide(group))
                group = []
                yield from self._drain()
        if not self._stop.is_set():
            self._admit(self._decide(group))
            yield from self._drain()

    def later_payloads(self) -> Iterator[Payload]:
        """The updates put aside, now that :meth:`read_befores` read their tasks."""
        group: list[Decision] = []
        for decision in self.later.replay():
            if self._stop.is_set():
                return
            group.append(decision)
            if len(group) >= GROUP:
                self._admit(group, deferring=False)
                group = []
                yield from self._drain()
        if not self._stop.is_set():
            self._admit(group, deferring=False)
            yield from self._drain()

    async def read_befores(self, client: IvvyClient) -> None:
        """Read the tasks of the updates put aside, in one pass over ``getTaskList``; a task
        not listed (deleted, or not visible to this key) has nothing to put back."""
        listed = await tasks_among(client, self.later.tasks)
        self._befores.update({t: snapshot(listed.get(t, {})) for t in self.later.tasks})

    def fail_later(self, message: str) -> None:
        """The updates put aside end failed (``UNREAD``): not sent."""
        for decision in self.later.replay():
            failed = Outcome("failed", error_code=UNREAD, message=message)
            self._run.done(decision.row.number, failed)
        self._run.flush()

    def _drain(self) -> Iterator[Payload]:
        while self._unsent and not self._stop.is_set():
            yield self._unsent.popleft()

    def _before(self, task: int) -> Mapping[str, Any] | None:
        if task in self._befores:
            return self._befores[task]
        found = self._before_of(task) if self._before_of is not None else None
        return snapshot(found) if found is not None else None

    def _admit(self, decisions: list[Decision], *, deferring: bool = True) -> None:
        now = time.time()
        written: Mapping[int, float] = {}
        if self._written_of is not None:
            updates = [int(d.checked.params["id"]) for d in decisions
                       if isinstance(d.checked, Payload) and d.checked.is_update]  # fmt: skip
            written = self._written_of(updates) if updates else {}
        for decision in decisions:
            checked = decision.checked
            origin, line = decision.origin, decision.line
            number = decision.row.number
            if isinstance(checked, Outcome):
                self._run.done(number, checked, key=decision.key, params=decision.params,
                               origin=origin, line=line)  # fmt: skip
                continue
            before = None
            if checked.is_update and self._keep_befores:
                before = self._before(int(checked.params["id"]))
                if before is None and deferring:
                    self.later.put(decision)
                    continue
                task = int(checked.params["id"])
                if before is not None and edited_since(before, written.get(task), self._offset):
                    # Changed in iVvy since this tool wrote it: not sent (the key or row keeps
                    # what was last sent, so the next run finds the same conflict).
                    outcome = conflict(task, before, checked.params)
                    outcome = dataclasses.replace(outcome, warnings=checked.warnings)
                    self._run.done(number, outcome, origin=origin, line=line)
                    continue
            self._run.in_flight(number, checked.params, now, key=decision.key, before=before,
                                origin=origin, line=line)  # fmt: skip
            self._places[number] = decision
            self._unsent.append(checked)
        self._run.flush()

    def record(self, payload: Payload, outcome: Outcome) -> None:
        number = payload.row.number
        if outcome.error_code in KEEP_IN_FLIGHT:
            # It stays in flight: the next run settles it before sending anything of it.
            self._run.unsettled(number, outcome)
            self._places.pop(number, None)
            return
        decision = self._places.pop(number, None)
        if outcome.result == "skipped":
            # Not sent (iVvy ended the session first): pending again, for --resume.
            self._run.forget([number])
            return
        if payload.warnings:
            outcome = dataclasses.replace(outcome, warnings=payload.warnings + outcome.warnings)
        emptied = tuple(n for n in CLEARABLE if payload.params.get(n) == "")
        if emptied and outcome.result == "updated" and outcome.task_id is not None:
            column = payload.columns.get(emptied[0])
            self.cleared[outcome.task_id] = (number, emptied, outcome, column)
        self._run.done(
            number, outcome, sent_at=time.time(), params=payload.params,
            key=decision.key if decision else None,
            origin=decision.origin if decision else None,
            line=decision.line if decision else None,
        )  # fmt: skip

    async def check_cleared(self, client: IvvyClient) -> int:
        """Read back the tasks of updates that sent a field empty to clear it (the reference
        does not say what iVvy does with one): a row whose task still holds the value, or
        could not be read, ends ``updated`` with ``NOT_CLEARED``. How many did."""
        if not self.cleared:
            return 0
        try:
            listed: Mapping[int, Mapping[str, Any]] = await tasks_among(client, self.cleared)
            unread = ""
        except IvvyError as exc:
            listed, unread = {}, f"the task could not be read back ({exc})"
        kept = 0
        for task, (number, names, outcome, column) in self.cleared.items():
            now = listed.get(task)
            if now is None:
                why = unread or "the task is not listed by getTaskList now"
                what = f"whether iVvy cleared {', '.join(names)} is not known: {why}"
            else:
                still = [f"{n} ({_sample(plain(now.get(n)))})" for n in names if plain(now.get(n))]
                if not still:
                    continue
                what = (
                    f"iVvy kept {', '.join(still)} although it was sent empty to clear it "
                    "(this iVvy does not clear a field sent empty): clear it in iVvy by hand"
                )
            kept += 1
            amended = dataclasses.replace(
                outcome, error_code=NOT_CLEARED, field=column,
                message=f"task {task} updated, but {what}",
            )  # fmt: skip
            self._run.amend(number, amended)
        self.cleared.clear()
        self._run.flush()
        return kept

    def batch_sent(self, async_id: str, payloads: list[Payload]) -> None:
        """iVvy queued these rows as batch ``async_id``: into the journal at once."""
        self._run.batch_sent((p.row.number for p in payloads), async_id)

    def release(self) -> None:
        """Rows written in flight but never handed to the send stage (the run was stopped) are
        pending again."""
        self._run.forget(p.row.number for p in self._unsent)
        self._unsent.clear()
        self._run.flush()


def _sample(text: str) -> str:
    """A stored value, shortened for a message."""
    return repr(text if len(text) <= 40 else text[:39] + "…")
