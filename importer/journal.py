"""Record: the run journal, a SQLite file that holds every row's state as it changes.

One journal per target by default (under the user's data directory; ``--state PATH`` chooses
another), holding:

- ``runs``: one line per run (an import or an undo), keyed by the target (base URL and API key,
  never the secret) and the source's fingerprint (its bytes and sheet);
- ``rows``: each row a run has reached. A row absent is pending; ``in_flight`` is written and
  committed *before* the row is sent (with what is sent, so a later run can look it up) and
  ``done`` with its outcome after, so a run killed at any instant leaves every sent row either
  done or in flight, and rows in flight are reconciled, never blindly sent again;
- ``batches``: in batch mode, the ``asyncId`` iVvy gave each row's batch, written as soon as it
  is known, so a run killed while a batch runs has the next run ask the batch API what it did;
- ``keys``: for ``--key``, the task each legacy id became in a target, with a digest of what was
  sent, so a nightly re-run updates or leaves alone instead of creating again;
- ``lineage``: for rows without a key, the task each row of a source became in a target, by the
  source's *origin* (the fingerprint of the file first imported: a results sheet of ours read
  back carries its run's reference, so its rows are the rows of that file) and the row's number
  there. Every path (``--resume``, a results sheet with or without ``--only``, ``--new-run``, the
  page) asks it before creating a row: a row that has a task is updated or unchanged, never
  created again.

The tasks the journal knows in a target (``lineage``, ``keys``, and every row's outcome) are the
tasks this tool made or was told to update: any other id in a source is of unknown origin, and a
run refuses to update it unless told so (``--update-existing``).

Outcomes are written in groups (a few hundred, or every quarter second) to keep the journal's cost
small; a kill loses at most those, and their rows are then still ``in_flight``: reconciled.
The file is in WAL mode, and a lock file beside it keeps two runs from using it at once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import platformdirs
from filelock import FileLock, Timeout

from .errors import UsageError
from .model import Outcome

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    source TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    options TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL,
    results TEXT,
    undoes INTEGER,
    origin TEXT,
    ref TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_source ON runs (target, fingerprint, kind);
CREATE TABLE IF NOT EXISTS rows (
    run INTEGER NOT NULL,
    number INTEGER NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    task_id INTEGER,
    error_code TEXT,
    field TEXT,
    message TEXT,
    warnings TEXT,
    sent_at REAL,
    params TEXT,
    key TEXT,
    line INTEGER,
    origin TEXT,
    before TEXT,
    PRIMARY KEY (run, number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rows_in_flight ON rows (state) WHERE state = 'in_flight';
CREATE TABLE IF NOT EXISTS batches (
    run INTEGER NOT NULL,
    number INTEGER NOT NULL,
    async_id TEXT NOT NULL,
    PRIMARY KEY (run, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keys (
    target TEXT NOT NULL,
    key_column TEXT NOT NULL,
    key_value TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    digest TEXT NOT NULL,
    run INTEGER NOT NULL,
    PRIMARY KEY (target, key_column, key_value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lineage (
    target TEXT NOT NULL,
    origin TEXT NOT NULL,
    number INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    digest TEXT NOT NULL,
    run INTEGER NOT NULL,
    PRIMARY KEY (target, origin, number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lineage_by_task ON lineage (target, task_id);
CREATE INDEX IF NOT EXISTS keys_by_task ON keys (target, task_id);
CREATE TABLE IF NOT EXISTS befores (
    target TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    before TEXT NOT NULL,
    PRIMARY KEY (target, task_id)
) WITHOUT ROWID;
"""

#: Columns later versions added to a journal's tables (an older journal gains them when opened).
_ADDED = {
    "runs": ("origin TEXT", "ref TEXT"),
    "rows": ("line INTEGER", "origin TEXT", "before TEXT"),
}

#: Outcomes held before they are written, and the longest they wait.
FLUSH_ROWS = 500
FLUSH_SECONDS = 0.25
_WARNING_SEPARATOR = "\n"


def default_journal_path(target: str) -> Path:
    """The journal of ``target`` under the user's data directory: one file per target."""
    folder = platformdirs.user_data_path("ivvy-task-importer", appauthor=False) / "journals"
    return folder / f"{hashlib.sha256(target.encode()).hexdigest()[:20]}.sqlite"


def fingerprint(path: Path, sheet: str | None = None) -> str:
    """What identifies a source's content: a hash of its bytes, and the sheet read."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() + (f":{sheet}" if sheet else "")


def digest_of(params: Mapping[str, Any]) -> str:
    """A stable digest of what a row sends (its task ``id`` left out): equal digests, same task."""
    content = {k: v for k, v in params.items() if k != "id"}
    text = json.dumps(content, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunRecord:
    """One run as the journal holds it."""

    id: int
    kind: str
    target: str
    source: str
    fingerprint: str
    options: dict[str, Any]
    started: str
    finished: str | None
    status: str
    results: str | None
    undoes: int | None
    #: The fingerprint of the file this run's rows come from (for a results sheet read back:
    #: the file first imported), and the reference its results sheets carry.
    origin: str | None = None
    ref: str | None = None

    @property
    def lineage(self) -> str:
        return self.origin or self.fingerprint


@dataclass(frozen=True)
class InFlight:
    """A row that was sent (or was about to be) when its run stopped: what it sent, and when."""

    run: int
    number: int
    params: dict[str, Any]
    sent_at: datetime
    key: str | None
    #: The row's origin and number there (see ``lineage``).
    origin: str = ""
    line: int = 0
    #: For an update: the task as iVvy held it before (JSON), what an undo restores.
    before: str | None = None


_RUN_COLUMNS = (
    "id, kind, target, source, fingerprint, options, started, finished, status, results, undoes, "
    "origin, ref"
)
_SET_LINEAGE = "INSERT OR REPLACE INTO lineage VALUES (?, ?, ?, ?, ?, ?)"
_SET_KEY = "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?, ?)"


def _record(row: Sequence[Any]) -> RunRecord:
    """A ``runs`` line (its :data:`_RUN_COLUMNS`) as a record."""
    values = list(row)
    values[5] = json.loads(values[5])
    return RunRecord(*values)


def _row_counts(db: sqlite3.Connection, run_id: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for state, result, n in db.execute(
        "SELECT state, result, COUNT(*) FROM rows WHERE run = ? GROUP BY state, result",
        (run_id,),
    ):
        counts[result if state == "done" else state] += n
    return counts


class Journal:
    """A journal file, held by this process alone while open (``UsageError`` otherwise). Its
    folder is made when ``make_folder`` (the default journals' folder), else it must exist."""

    def __init__(self, path: Path, *, make_folder: bool = True) -> None:
        self.path = Path(path)
        self._lock = FileLock(f"{self.path}.lock", timeout=0)
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
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            had_lineage = self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'lineage'"
            ).fetchone()
            self.db.executescript(_SCHEMA)
            for table, columns in _ADDED.items():
                have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
                for column in columns:
                    if column.split()[0] not in have:
                        self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
            self.db.execute("CREATE INDEX IF NOT EXISTS runs_by_ref ON runs (ref)")
            if not had_lineage:
                # A journal of an earlier version: its rows' tasks become their lineage (with
                # no digest, so that a row sent again is an update, never taken as unchanged).
                self.db.execute(
                    "INSERT OR IGNORE INTO lineage SELECT runs.target, runs.fingerprint, "
                    "rows.number, rows.task_id, '', rows.run FROM rows JOIN runs ON runs.id = "
                    "rows.run WHERE runs.kind = 'import' AND rows.state = 'done' AND "
                    "rows.task_id IS NOT NULL AND rows.key IS NULL ORDER BY rows.run"
                )
        except sqlite3.DatabaseError as exc:
            self._lock.release()
            raise UsageError(f"the journal {self.path} cannot be used: {exc}") from None

    def close(self) -> None:
        self.db.close()
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
        cursor = self.db.execute(
            "INSERT INTO runs (kind, target, source, fingerprint, options, started, status, "
            "results, undoes, origin, ref) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
            (kind, target, source, print_, json.dumps(options, default=str), _now(), results,
             undoes, origin or print_, secrets.token_hex(6)),
        )  # fmt: skip
        return self.run(int(cursor.lastrowid or 0))  # type: ignore[return-value]

    def reopen(self, run_id: int, results: str | None = None) -> RunRecord:
        self.db.execute(
            "UPDATE runs SET status = 'running', finished = NULL, results = COALESCE(?, results) "
            "WHERE id = ?",
            (results, run_id),
        )
        return self.run(run_id)  # type: ignore[return-value]

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

    def tasks_sent_since(self, moment: datetime) -> set[int]:
        """Task ids that rows done since ``moment`` created or updated (rows own them): a row's
        time is when it was done, after its task was made."""
        return {
            task_id
            for (task_id,) in self.db.execute(
                "SELECT task_id FROM rows WHERE state = 'done' AND task_id IS NOT NULL "
                "AND sent_at >= ?",
                (moment.timestamp(),),
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
                (target, row.origin, row.line, outcome.task_id, digest_of(row.params), row.run),
            )

    # -- keys ---------------------------------------------------------------------------

    def known(self, target: str) -> Known:
        """What this journal knows of ``target``'s tasks."""
        return Known(self.db, target)

    def set_key(
        self, target: str, column: str, value: str, task_id: int, digest: str, run: int
    ) -> None:
        self.db.execute(_SET_KEY, (target, column, value, task_id, digest, run))

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
        reader = read_only_journal(self.path)
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


@dataclass(frozen=True)
class Touched:
    """A row the import created or updated: its task, and for an update what it sent, the
    task's values before, and when."""

    number: int
    result: str
    task_id: int
    sent: dict[str, Any] | None = None
    before: dict[str, Any] | None = None
    sent_at: float | None = None


def _chunked(
    db: sqlite3.Connection, query: str, args: tuple[Any, ...], values: Sequence[Any]
) -> dict[Any, Any]:
    """``query`` (one ``IN ({})``) over ``values`` 500 at a time: first column → the rest (a
    tuple, or the one value when there is one)."""
    found: dict[Any, Any] = {}
    for start in range(0, len(values), 500):
        part = values[start : start + 500]
        sql = query.format(",".join("?" * len(part)))
        for first, *rest in db.execute(sql, (*args, *part)):
            found[first] = tuple(rest) if len(rest) > 1 else (rest[0] if rest else None)
    return found


class Known:
    """What a journal knows of one target's tasks, on a connection of its own or the journal's
    (``validate`` reads without the lock, a run with it). A ``None`` journal knows nothing."""

    def __init__(self, db: sqlite3.Connection | None, target: str) -> None:
        self._db = db
        self.target = target

    def _ask(self, query: str, args: tuple[Any, ...], values: Iterable[Any]) -> dict[Any, Any]:
        return {} if self._db is None else _chunked(self._db, query, args, list(values))

    def keys(self, column: str, values: Iterable[str]) -> dict[str, tuple[int, str]]:
        """``value → (task id, digest)`` for the legacy ids among ``values`` already imported."""
        return self._ask(
            "SELECT key_value, task_id, digest FROM keys WHERE target = ? AND key_column = ? "
            "AND key_value IN ({})",
            (self.target, column),
            values,
        )

    def lineage(self, origin: str, numbers: Iterable[int]) -> dict[int, tuple[int, str]]:
        """``row number → (task id, digest)`` for the rows of ``origin`` among ``numbers`` that
        became tasks."""
        return self._ask(
            "SELECT number, task_id, digest FROM lineage WHERE target = ? AND origin = ? AND "
            "number IN ({})",
            (self.target, origin),
            numbers,
        )

    def digests(self, task_ids: Iterable[int]) -> dict[int, str]:
        """``task id → digest`` of what this tool last sent to each of ``task_ids`` it knows by
        a row's lineage or a legacy id."""
        wanted = list(task_ids)
        found: dict[int, str] = {}
        for table in ("keys", "lineage"):
            query = f"SELECT task_id, digest FROM {table} WHERE target = ? AND task_id IN ({{}})"
            found.update(self._ask(query, (self.target,), wanted))
        return found

    def tasks(self, task_ids: Iterable[int]) -> set[int]:
        """Those of ``task_ids`` that this tool made in the target, or was told to update: the
        tasks its rows' lineage and legacy ids lead to (every row that got a task has one of
        the two; a journal of an earlier version gained them when it was opened)."""
        wanted = set(task_ids)
        known: set[int] = set()
        for query in (
            "SELECT DISTINCT task_id FROM lineage WHERE target = ? AND task_id IN ({})",
            "SELECT DISTINCT task_id FROM keys WHERE target = ? AND task_id IN ({})",
        ):
            known.update(self._ask(query, (self.target,), sorted(wanted - known)))
        return known

    def latest_import(self, print_: str) -> tuple[RunRecord, Counter[str]] | None:
        """The last import of the source with fingerprint ``print_`` into this target that
        made or changed tasks, with its rows by result."""
        if self._db is None:
            return None
        for found in self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE target = ? AND fingerprint = ? AND "
            "kind = 'import' ORDER BY id DESC",
            (self.target, print_),
        ).fetchall():
            record = _record(found)
            counts = _row_counts(self._db, record.id)
            if counts["created"] or counts["updated"]:
                return record, counts
        return None

    def before(self, task_id: int) -> dict[str, Any] | None:
        """The task as it was before an update of it that was in flight when its run stopped
        (it may have been carried out), if there is one."""
        if self._db is None:
            return None
        found = self._db.execute(
            "SELECT before FROM befores WHERE target = ? AND task_id = ?", (self.target, task_id)
        ).fetchone()
        return json.loads(found[0]) if found else None

    def run_by_ref(self, ref: str) -> RunRecord | None:
        """The import run into this target whose results sheets carry reference ``ref``."""
        if self._db is None or not ref:
            return None
        found = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE ref = ? AND target = ?", (ref, self.target)
        ).fetchone()
        return _record(found) if found else None


def list_runs(path: Path, target: str) -> list[tuple[RunRecord, Counter[str]]]:
    """The runs into ``target`` that the journal at ``path`` holds, the newest first, with their
    rows by result; read without the lock (a run may be going on)."""
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
        return [(record, _row_counts(db, record.id)) for record in records]
    finally:
        db.close()


def read_only_journal(path: Path) -> sqlite3.Connection | None:
    """The journal at ``path`` opened for reading only, without its lock (a run may be writing
    it); ``None`` when there is none yet."""
    if not Path(path).exists():
        return None
    try:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        db.execute("SELECT 1 FROM keys LIMIT 1")
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"the journal {path} cannot be read: {exc}") from None
    return db


def _outcome_values(outcome: Outcome) -> tuple[Any, ...]:
    code = None if outcome.error_code is None else str(outcome.error_code)
    return (
        outcome.result,
        outcome.task_id,
        code,
        outcome.field,
        outcome.message,
        _WARNING_SEPARATOR.join(outcome.warnings),
    )


def _outcome_of(values: Sequence[Any]) -> Outcome:
    result, task_id, code, field_, message, warnings = values
    error_code: int | str | None = code
    if isinstance(code, str) and code.isdigit():
        error_code = int(code)
    return Outcome(
        result,
        task_id=task_id,
        error_code=error_code,
        field=field_,
        message=message or "",
        warnings=tuple(warnings.split(_WARNING_SEPARATOR)) if warnings else (),
    )


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
                "warnings = excluded.warnings, sent_at = COALESCE(excluded.sent_at, sent_at), "
                "params = excluded.params, origin = COALESCE(excluded.origin, origin), "
                "line = COALESCE(excluded.line, line)",
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
            if key and self.key_column:
                keyed = (self.record.target, self.key_column, key, outcome.task_id, digest, self.id)
                self._pending.append((_SET_KEY, keyed))
            elif not key:
                at = number if line is None else line
                where = origin or self.record.lineage
                placed = (self.record.target, where, at, outcome.task_id, digest, self.id)
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
        db = self.journal.db
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


def is_done(bits: bytearray, number: int) -> bool:
    index = number >> 3
    return index < len(bits) and bool(bits[index] & (1 << (number & 7)))
