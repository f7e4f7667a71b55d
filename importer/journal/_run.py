"""One run's rows in the journal: states written in groups, outcomes read back in row order."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..errors import JournalLost
from ..model import Outcome
from ._pg import PgConnection
from ._schema import (
    _SET_KEY,
    _SET_LINEAGE,
    FLUSH_ROWS,
    FLUSH_SECONDS,
    RunRecord,
    _outcome_of,
    _outcome_values,
    digest_of,
)
from ._store import Journal


class RunJournal:
    """One run's rows in a :class:`Journal`: states written in groups, outcomes read back in row
    order. ``on_done`` hears of each row's number and outcome as they are recorded."""

    def __init__(
        self,
        journal: Journal,
        record: RunRecord,
        *,
        key_column: str | None = None,
        on_done: Callable[[int, Outcome], None] | None = None,
    ) -> None:
        self.journal = journal
        self.record = record
        self.key_column = key_column
        self._on_done = on_done
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        #: Whether what is pending must be on disk before the flush returns (a row about to
        #: be sent, a batch's id): everything else may wait for a later commit.
        self._durable = False
        self._done_waiting = 0
        self._flushed = time.monotonic()

    @property
    def id(self) -> int:
        return self.record.id

    def in_flight(
        self,
        number: int,
        params: Mapping[str, Any],
        sent_at: float,
        key: str | None = None,
        *,
        origin: str | None = None,
        line: int | None = None,
        before: Mapping[str, Any] | None = None,
    ) -> None:
        """Row ``number`` is about to be sent with ``params``: written at the next
        :meth:`flush`, which the caller makes before sending it. ``origin`` and ``line``: where
        the row comes from (when not this run's source and ``number``); ``before``: for an
        update, the task as iVvy held it (what an undo restores)."""
        self._durable = True
        self._pending.append(
            (
                "INSERT OR REPLACE INTO rows (run, number, state, sent_at, params, key, origin, "
                "line, before) VALUES (?, ?, 'in_flight', ?, ?, ?, ?, ?, ?)",
                (
                    self.id,
                    number,
                    sent_at,
                    json.dumps(dict(params), default=str),
                    key,
                    self._own(origin),
                    None if line == number else line,
                    None if before is None else json.dumps(dict(before), default=str),
                ),
            )
        )

    def _own(self, origin: str | None) -> str | None:
        """``origin`` as a row stores it: ``None`` for this run's own."""
        return None if origin in (None, self.record.lineage) else origin

    def done(
        self,
        number: int,
        outcome: Outcome,
        *,
        sent_at: float | None = None,
        params: Mapping[str, Any] | None = None,
        key: str | None = None,
        origin: str | None = None,
        line: int | None = None,
    ) -> None:
        """Row ``number``'s outcome. With what it sent (``params``) and a task: its legacy id
        (``key``), else its place in its origin (``origin``, ``line``: by default this run's
        source and ``number``), leads to the task from now on."""
        kept = (
            json.dumps(dict(params), default=str)
            if params and outcome.result == "updated"
            else None
        )
        self._pending.append(
            (
                "INSERT INTO rows (run, number, state, result, task_id, error_code, field, "
                "message, warnings, sent_at, params, origin, line) VALUES (?, ?, 'done', ?, ?, "
                "?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run, number) DO UPDATE SET state = 'done', "
                "result = excluded.result, task_id = excluded.task_id, error_code = "
                "excluded.error_code, field = excluded.field, message = excluded.message, "
                "warnings = excluded.warnings, sent_at = COALESCE(excluded.sent_at, rows.sent_at), "
                "params = excluded.params, origin = COALESCE(excluded.origin, rows.origin), "
                "line = COALESCE(excluded.line, rows.line)",
                (
                    self.id,
                    number,
                    *_outcome_values(outcome),
                    sent_at,
                    kept,
                    self._own(origin),
                    None if line == number else line,
                ),
            )
        )
        if outcome.result == "updated" and outcome.task_id is not None:
            self._pending.append(
                ("DELETE FROM befores WHERE target = ? AND task_id = ?",
                 (self.record.target, outcome.task_id))
            )  # fmt: skip
        if params is not None and outcome.task_id is not None and self.record.kind == "import":
            digest = digest_of(params)
            # Written now, when sent; a row left unchanged keeps the last write's time.
            written = time.time() if sent_at is not None else None
            if key and self.key_column:
                keyed = (self.record.target, self.key_column, key, outcome.task_id, digest,
                         self.id, written)  # fmt: skip
                self._pending.append((_SET_KEY, keyed))
            elif not key:
                at = number if line is None else line
                where = origin or self.record.lineage
                placed = (self.record.target, where, at, outcome.task_id, digest, self.id,
                          written)  # fmt: skip
                self._pending.append((_SET_LINEAGE, placed))
        self._done_waiting += 1
        if self._on_done is not None:
            self._on_done(number, outcome)
        if self._done_waiting >= FLUSH_ROWS or time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write what is waiting, in one transaction."""
        self._flushed = time.monotonic()
        if not self._pending:
            return
        pending, self._pending, self._done_waiting = self._pending, [], 0
        durable, self._durable = self._durable, False
        db = self.journal.db
        if isinstance(db, PgConnection):
            # Only what must be known before a row is sent waits for the server's disk: a
            # row's outcome lost in a crash of the server leaves it in flight, and the next
            # run looks it up in iVvy (as it does after a kill).
            db.write_all(pending, durable=durable)
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                start = 0
                while start < len(pending):
                    sql = pending[start][0]
                    end = start
                    while end < len(pending) and pending[end][0] == sql:
                        end += 1
                    db.executemany(sql, [args for _, args in pending[start:end]])
                    start = end
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # a full disk, an I/O error, a lock kept
            raise JournalLost(str(self.journal.where), str(exc)) from None

    def amend(self, number: int, outcome: Outcome) -> None:
        """Row ``number``, done, ends ``outcome`` instead (what it sent and the task's key or
        place stay as they are)."""
        self._pending.append(
            (
                "UPDATE rows SET result = ?, task_id = ?, error_code = ?, field = ?, message = ?, "
                "warnings = ? WHERE run = ? AND number = ? AND state = 'done'",
                (*_outcome_values(outcome), self.id, number),
            )
        )

    def unsettled(self, number: int, outcome: Outcome) -> None:
        """Row ``number`` stays in flight (it may be in iVvy; the next run settles it), with
        ``outcome`` saying so in the results meanwhile."""
        self._pending.append(
            (
                "UPDATE rows SET result = ?, task_id = ?, error_code = ?, field = ?, message = ?, "
                "warnings = ? WHERE run = ? AND number = ? AND state = 'in_flight'",
                (*_outcome_values(outcome), self.id, number),
            )
        )

    def batch_sent(self, numbers: Iterable[int], async_id: str) -> None:
        """Rows ``numbers`` went in batch ``async_id``: written at once (before anything else is
        done with the batch), so a kill from now on leaves the next run its id to ask about."""
        self._durable = True
        self._pending.extend(
            ("INSERT OR REPLACE INTO batches (run, number, async_id) VALUES (?, ?, ?)",
             (self.id, n, async_id))
            for n in numbers
        )  # fmt: skip
        self.flush()

    def forget(self, numbers: Iterable[int]) -> None:
        """These rows are pending again (written in flight, never sent)."""
        for number in numbers:
            self._pending.append(
                ("DELETE FROM rows WHERE run = ? AND number = ?", (self.id, number))
            )

    def done_numbers(self) -> bytearray:
        """A bitmap of the rows this run has finished, or that are still in flight after the
        rows in flight were settled (one bit per row number): none of them is to be sent."""
        top = self.journal.db.execute(
            "SELECT MAX(number) FROM rows WHERE run = ?", (self.id,)
        ).fetchone()[0]
        bits = bytearray(((top or 0) >> 3) + 1)
        for (number,) in self.journal.db.execute(
            "SELECT number FROM rows WHERE run = ?", (self.id,)
        ):
            bits[number >> 3] |= 1 << (number & 7)
        return bits

    def outcomes(self) -> Iterator[tuple[int, Outcome | None]]:
        """``(row number, outcome)`` in row order; ``None`` for a row still in flight."""
        self.flush()
        for number, state, *values in self.journal.db.execute(
            "SELECT number, state, result, task_id, error_code, field, message, warnings "
            "FROM rows WHERE run = ? ORDER BY number",
            (self.id,),
        ):
            # A row in flight may carry what it is waiting for (see ``unsettled``).
            known = state == "done" or values[0] is not None
            yield number, (_outcome_of(values) if known else None)
