"""The journal file: runs, their rows, locks and migrations; every SQL statement a run or an undo
needs outside a run's own rows."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import Generator, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..errors import UsageError
from ..model import Outcome
from ._known import Known
from ._pg import PgConnection, is_postgres, lock_key, shown
from ._pg import schema as pg_schema
from ._schema import (
    _ADDED,
    _RUN_COLUMNS,
    _SCHEMA,
    _SET_KEY,
    _SET_LINEAGE,
    Cancelled,
    Db,
    InFlight,
    RunRecord,
    Touched,
    _now,
    _outcome_values,
    _record,
    _row_counts,
    digest_of,
    read_only_journal,
)


class Journal:
    """A journal file, held by this process alone while open (``UsageError`` otherwise). Its
    folder is made when ``make_folder`` (the default journals' folder), else it must exist."""

    def __init__(
        self, path: Path | str, *, make_folder: bool = True, target: str | None = None
    ) -> None:
        self.url: str | None = None
        if is_postgres(path):
            self._open_postgres(str(path), target)
            return
        self.path = Path(path)
        self.where = str(self.path)
        self._lock: FileLock | None = FileLock(f"{self.path}.lock", timeout=0)
        folder = self.path.parent
        if not make_folder and not folder.is_dir():
            why = "is not a folder" if folder.exists() else "does not exist (it is not created)"
            raise UsageError(
                f"cannot use the journal {self.path}: {folder} {why}; give --state with a file "
                "in a folder you can write"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except Timeout:  # (an OSError too: first)
            raise UsageError(
                f"another task-import run is using the journal {self.path}: wait for it to "
                "finish (two runs into one target at once could both send the same rows)"
            ) from None
        except OSError as exc:
            raise UsageError(
                f"cannot use the journal {self.path} ({exc.strerror or exc}): give --state with "
                "a file in a folder you can write"
            ) from None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db: Db = db
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            had_lineage = db.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'lineage'"
            ).fetchone()
            db.executescript(_SCHEMA)
            for table, columns in _ADDED.items():
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for column in columns:
                    if column.split()[0] not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
            db.execute("CREATE INDEX IF NOT EXISTS runs_by_ref ON runs (ref)")
            if not had_lineage:
                # A journal of an earlier version: its rows' tasks become their lineage (with
                # no digest, so that a row sent again is an update, never taken as unchanged).
                db.execute(
                    "INSERT OR IGNORE INTO lineage (target, origin, number, task_id, digest, run) "
                    "SELECT runs.target, runs.fingerprint, "
                    "rows.number, rows.task_id, '', rows.run FROM rows JOIN runs ON runs.id = "
                    "rows.run WHERE runs.kind = 'import' AND rows.state = 'done' AND "
                    "rows.task_id IS NOT NULL AND rows.key IS NULL ORDER BY rows.run"
                )
        except sqlite3.DatabaseError as exc:
            self._lock.release()
            raise UsageError(f"the journal {self.path} cannot be used: {exc}") from None

    def _open_postgres(self, url: str, target: str | None) -> None:
        """The journal in the PostgreSQL database at ``url``; its tables are made if missing,
        and the run holds an advisory lock on ``target`` (on the whole journal without one)."""
        self.url, self.where, self._lock = url, shown(url), None
        self.path = Path(self.where)  # (shown only)
        db = PgConnection(url)
        # One journal is a database's schema: a run holds its target's lock and the journal's
        # shared; a Journal opened for no target holds the journal's alone.
        (where,) = db.raw("SELECT current_database() || '.' || current_schema()").fetchone()
        whole = lock_key(where)
        if target is None:
            held = db.raw("SELECT pg_try_advisory_lock(%s)", (whole,)).fetchone()[0]
        else:
            held = db.raw(
                "SELECT pg_try_advisory_lock_shared(%s) AND pg_try_advisory_lock(%s)",
                (whole, lock_key(f"{where}:{target}")),
            ).fetchone()[0]
        if not held:
            db.close()
            raise UsageError(
                f"another task-import run is using the journal {self.where} for this target: "
                "wait for it to finish (two runs into one target at once could both send the "
                "same rows)"
            )
        try:
            db.raw("BEGIN")
            db.raw("SELECT pg_advisory_xact_lock(%s)", (lock_key(f"{where}:(schema)"),))
            for statement in pg_schema(_SCHEMA):
                db.raw(statement)
            db.raw("CREATE INDEX IF NOT EXISTS runs_by_ref ON runs (ref)")
            for table, columns in _ADDED.items():
                for column in columns:
                    typed = column.replace("INTEGER", "BIGINT").replace("REAL", "DOUBLE PRECISION")
                    db.raw(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {typed}")
            db.raw("COMMIT")
        except Exception as exc:
            db.close()
            raise UsageError(f"the journal {self.where} cannot be used: {exc}") from None
        self.db = db

    @property
    def name(self) -> str:
        """How a message names it: the file's name, or the database's URL (no password)."""
        return self.where if self.url is not None else self.path.name

    def reader(self) -> Db | None:
        """A connection of its own, for reading only, without the lock."""
        if self.url is not None:
            return PgConnection(self.url, read_only=True)
        return read_only_journal(self.path)

    def close(self) -> None:
        self.db.close()  # (PostgreSQL's advisory lock goes with its connection)
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------

    def run(self, run_id: int) -> RunRecord | None:
        found = self.db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        return _record(found) if found else None

    def latest(self, target: str, print_: str, kind: str = "import") -> RunRecord | None:
        """The last run of this kind of the source with fingerprint ``print_`` into ``target``."""
        found = self.db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE target = ? AND fingerprint = ? "
            "AND kind = ? ORDER BY id DESC LIMIT 1",
            (target, print_, kind),
        ).fetchone()
        return _record(found) if found else None

    def keyed_runs(self, target: str, column: str, before: int) -> list[RunRecord]:
        """The import runs into ``target`` keyed by ``column`` that began before run
        ``before``, the newest first (the earlier nights of a nightly job)."""
        return [
            record
            for record in self.runs(target)
            if record.id < before
            and record.kind == "import"
            and record.options.get("key") == column
        ]

    def failed_keys(self, run_id: int) -> dict[str, str]:
        """``key → error code`` for the rows of run ``run_id`` that were sent and failed."""
        return {
            str(key): "" if code is None else str(code)
            for key, code in self.db.execute(
                "SELECT key, error_code FROM rows WHERE run = ? AND state = 'done' AND "
                "result = 'failed' AND key IS NOT NULL",
                (run_id,),
            )
        }

    def sent_keys(self, run_id: int) -> dict[str, str]:
        """``key → result`` for the rows of run ``run_id`` that were sent (or looked up)."""
        return {
            str(key): str(result)
            for key, result in self.db.execute(
                "SELECT key, result FROM rows WHERE run = ? AND state = 'done' AND key IS NOT NULL",
                (run_id,),
            )
        }

    def runs(self, target: str | None = None) -> list[RunRecord]:
        """Every run (of ``target``), the newest first."""
        query = f"SELECT {_RUN_COLUMNS} FROM runs"
        args: tuple[Any, ...] = ()
        if target is not None:
            query, args = query + " WHERE target = ?", (target,)
        return [_record(r) for r in self.db.execute(query + " ORDER BY id DESC", args)]

    def start(
        self,
        *,
        kind: str,
        target: str,
        source: str,
        print_: str,
        options: Mapping[str, Any],
        results: str | None = None,
        undoes: int | None = None,
        origin: str | None = None,
    ) -> RunRecord:
        (run_id,) = self.db.execute(
            "INSERT INTO runs (kind, target, source, fingerprint, options, started, status, "
            "results, undoes, origin, ref) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?) "
            "RETURNING id",
            (kind, target, source, print_, json.dumps({**options, **_process()}, default=str),
             _now(), results, undoes, origin or print_, secrets.token_hex(6)),
        ).fetchone()  # fmt: skip
        return self.run(int(run_id))  # type: ignore[return-value]

    def reopen(self, run_id: int, results: str | None = None) -> RunRecord:
        self.db.execute(
            "UPDATE runs SET status = 'running', finished = NULL, results = COALESCE(?, results) "
            "WHERE id = ?",
            (results, run_id),
        )
        self.note(run_id, **_process())
        return self.run(run_id)  # type: ignore[return-value]

    def note(self, run_id: int, **values: Any) -> None:
        """Facts learnt during run ``run_id`` kept with its options (its source's row count,
        whether its source looked broken)."""
        record = self.run(run_id)
        assert record is not None
        options = {**record.options, **values}
        self.db.execute(
            "UPDATE runs SET options = ? WHERE id = ?", (json.dumps(options, default=str), run_id)
        )

    def end(self, run_id: int, status: str) -> None:
        self.db.execute(
            "UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, _now(), run_id)
        )

    def prune(self, target: str, before: datetime) -> tuple[int, int]:
        """The rows of the runs into ``target`` that ended before ``before`` are deleted (their
        lines stay, marked ``pruned``; the keys of ``--key`` stay too, so nightly runs go on).
        Returns how many runs and rows went."""
        stamp = before.isoformat(timespec="seconds")
        runs = [
            run_id
            for (run_id,) in self.db.execute(
                "SELECT id FROM runs WHERE target = ? AND status IN ('finished', 'stopped') "
                "AND finished IS NOT NULL AND finished <= ?",
                (target, stamp),
            )
        ]
        rows = 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for run_id in runs:
                rows += self.db.execute("DELETE FROM rows WHERE run = ?", (run_id,)).rowcount
                self.db.execute("UPDATE runs SET status = 'pruned' WHERE id = ?", (run_id,))
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return len(runs), rows

    def row_counts(self, run_id: int) -> Counter[str]:
        """Rows of a run by result; rows in flight count as ``in_flight``."""
        return _row_counts(self.db, run_id)

    # -- rows ---------------------------------------------------------------------------

    def in_flight(self, target: str) -> list[InFlight]:
        """Rows of any run into ``target`` that were in flight when their run stopped."""
        rows = self.db.execute(
            "SELECT rows.run, number, params, sent_at, key, COALESCE(rows.origin, runs.origin, "
            "runs.fingerprint), COALESCE(line, number), before FROM rows JOIN runs ON runs.id = "
            "rows.run WHERE state = 'in_flight' AND runs.target = ? ORDER BY rows.run, number",
            (target,),
        ).fetchall()
        return [
            InFlight(
                run,
                number,
                json.loads(params),
                datetime.fromtimestamp(sent, UTC),
                key,
                origin,
                line,
                before,
            )
            for run, number, params, sent, key, origin, line, before in rows
        ]

    def batches_of(self, rows: Iterable[InFlight]) -> dict[str, list[InFlight]]:
        """The rows among ``rows`` that went in a batch iVvy queued, by its ``asyncId``."""
        wanted = {(r.run, r.number): r for r in rows}
        found: dict[str, list[InFlight]] = {}
        for run in {r.run for r in wanted.values()}:
            for number, async_id in self.db.execute(
                "SELECT number, async_id FROM batches WHERE run = ?", (run,)
            ):
                if (run, number) in wanted:
                    found.setdefault(async_id, []).append(wanted[(run, number)])
        return found

    def tasks_sent_since(self, target: str, moment: datetime) -> set[int]:
        """Task ids in ``target`` that rows done since ``moment`` created or updated (rows own
        them): a row's time is when it was done, after its task was made."""
        return {
            task_id
            for (task_id,) in self.db.execute(
                "SELECT rows.task_id FROM rows JOIN runs ON runs.id = rows.run WHERE "
                "runs.target = ? AND rows.state = 'done' AND rows.task_id IS NOT NULL "
                "AND rows.sent_at >= ?",
                (target, moment.timestamp()),
            )
        }

    def settle(self, target: str, row: InFlight, outcome: Outcome | None) -> None:
        """A row in flight, reconciled: done with ``outcome`` (a task found is the row's task
        from now on), or (``None``) pending again."""
        self.db.execute("DELETE FROM batches WHERE run = ? AND number = ?", (row.run, row.number))
        if outcome is None:
            self.db.execute("DELETE FROM rows WHERE run = ? AND number = ?", (row.run, row.number))
            if row.before is not None and row.params.get("id") is not None:
                # The update may have been carried out: the task as it was before stays the
                # one an undo restores, whatever the next send of it reads.
                self.db.execute(
                    "INSERT OR IGNORE INTO befores VALUES (?, ?, ?)",
                    (target, int(row.params["id"]), row.before),
                )
            return
        # What an update sent stays (undo compares it with the task as it is then). Its time
        # becomes now, as for any row done: its task was made before now, maybe long after the
        # row was first sent (``tasks_sent_since`` must find it for a look-up's window).
        self.db.execute(
            "UPDATE rows SET state = 'done', result = ?, task_id = ?, error_code = ?, "
            "field = ?, message = ?, warnings = ?, params = CASE WHEN ? = 'updated' THEN params "
            "END, sent_at = ? WHERE run = ? AND number = ?",
            (*_outcome_values(outcome), outcome.result, time.time(), row.run, row.number),
        )
        if outcome.task_id is not None and not row.key and row.origin:
            self.db.execute(
                _SET_LINEAGE,
                (target, row.origin, row.line, outcome.task_id, digest_of(row.params), row.run,
                 time.time()),
            )  # fmt: skip

    # -- keys ---------------------------------------------------------------------------

    def known(self, target: str) -> Known:
        """What this journal knows of ``target``'s tasks."""
        return Known(self.db, target)

    def set_key(
        self, target: str, column: str, value: str, task_id: int, digest: str, run: int
    ) -> None:
        self.db.execute(_SET_KEY, (target, column, value, task_id, digest, run, time.time()))

    def gone(
        self, target: str, column: str, values: Iterable[tuple[str, int | None]], run: int
    ) -> None:
        """The keys ``values`` (each with its task's status before) were missing from run
        ``run``'s export and their tasks were cancelled: not cancelled again, and a row
        holding one again updates its task (its digest is cleared, so the row's values,
        status among them, are sent)."""
        now = time.time()  # the cancel is this tool's write: not an edit made in iVvy
        self.db.executemany(
            "UPDATE keys SET gone = ?, gone_status = ?, digest = '', written = ? WHERE "
            "target = ? AND key_column = ? AND key_value = ?",
            [(run, status, now, target, column, value) for value, status in values],
        )

    def cancelled_by(self, target: str, run: int) -> list[Cancelled]:
        """The keys whose tasks run ``run`` cancelled as gone from its export (and that no
        later run or undo has brought back), in key order."""
        return [
            Cancelled(str(column), str(value), int(task), status, written)
            for column, value, task, status, written in self.db.execute(
                "SELECT key_column, key_value, task_id, gone_status, written FROM keys WHERE "
                "target = ? AND gone = ? ORDER BY key_column, key_value",
                (target, run),
            )
        ]

    def back(self, target: str, cancelled: Iterable[Cancelled]) -> None:
        """These keys' tasks were put back (their cancel undone): live keys again, written
        now, whose rows are sent again when an export holds them."""
        now = time.time()
        self.db.executemany(
            "UPDATE keys SET gone = NULL, gone_status = NULL, written = ? WHERE target = ? AND "
            "key_column = ? AND key_value = ?",
            [(now, target, c.column, c.key) for c in cancelled],
        )

    def forget_undone(self, target: str, undo_run: int, original: int) -> None:
        """After undo ``undo_run`` of import ``original``: legacy ids and rows whose task it
        cancelled lead nowhere now (running the source again creates them anew); those whose
        task it restored lead to it still, as changed (running the source again updates it)."""
        done = (
            "SELECT u.task_id FROM rows u JOIN rows o ON o.run = ? AND o.number = u.number "
            "WHERE u.run = ? AND u.state = 'done' AND u.result = 'updated' AND o.result = ?"
        )
        for table in ("keys", "lineage"):
            self.db.execute(
                f"DELETE FROM {table} WHERE target = ? AND task_id IN ({done})",
                (target, original, undo_run, "created"),
            )
            self.db.execute(
                f"UPDATE {table} SET digest = '' WHERE target = ? AND task_id IN ({done})",
                (target, original, undo_run, "updated"),
            )

    def updated_tasks(self, run_id: int) -> set[int]:
        """The tasks run ``run_id`` updated (rows it sent, not kept from earlier results)."""
        return {
            task_id
            for (task_id,) in self.db.execute(
                "SELECT task_id FROM rows WHERE run = ? AND state = 'done' AND result = "
                "'updated' AND task_id IS NOT NULL AND sent_at IS NOT NULL",
                (run_id,),
            )
        }

    def touched(self, run_id: int) -> Generator[Touched, None, None]:
        """The rows run ``run_id`` created or updated, in row order, read on a connection of
        their own (what an undo of it does is written on this one meanwhile)."""
        reader = self.reader()
        assert reader is not None
        try:
            for number, result, task_id, params, before, sent_at in reader.execute(
                "SELECT number, result, task_id, params, before, sent_at FROM rows WHERE run = ? "
                "AND state = 'done' AND result IN ('created', 'updated') AND task_id IS NOT NULL "
                "AND sent_at IS NOT NULL ORDER BY number",  # not sent: kept from earlier results
                (run_id,),
            ):
                yield Touched(
                    number,
                    result,
                    task_id,
                    json.loads(params) if params else None,
                    json.loads(before) if before else None,
                    sent_at,
                )
        finally:
            reader.close()


def _process() -> dict[str, Any]:
    """Which process runs a run (so that ``runs`` can tell one that was killed)."""
    return {"process": {"pid": os.getpid(), "host": socket.gethostname()}}


def gone(record: RunRecord) -> bool:
    """Whether a run still marked ``running`` was run by a process of this machine that is no
    longer there (killed, or the machine restarted): it is stopped, not running."""
    if record.status != "running":
        return False
    process = record.options.get("process")
    if not isinstance(process, dict) or process.get("host") != socket.gethostname():
        return False  # another machine's (a pod, a worker): not known from here
    try:
        os.kill(int(process["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return False


def list_runs(path: Path | str, target: str) -> list[tuple[RunRecord, Counter[str]]]:
    """The runs into ``target`` that the journal at ``path`` holds, the newest first, with their
    rows by result; read without the lock (a run may be going on). A run whose process is
    gone is listed ``killed``."""
    db = read_only_journal(path)
    if db is None:
        return []
    try:
        records = [
            _record(row)
            for row in db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE target = ? ORDER BY id DESC", (target,)
            ).fetchall()
        ]
        records = [
            dataclasses.replace(record, status="killed") if gone(record) else record
            for record in records
        ]
        return [(record, _row_counts(db, record.id)) for record in records]
    finally:
        db.close()
