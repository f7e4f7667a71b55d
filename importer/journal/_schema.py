"""The journal's schema and its small values: tables, migrations, records, digests."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import platformdirs

from ..errors import UsageError
from ..model import Outcome
from ._pg import PgConnection, is_postgres


class Db(Protocol):
    """A journal's connection: ``sqlite3``'s, or :class:`~._pg.PgConnection` speaking as it
    does."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]], /) -> Any: ...

    def close(self) -> None: ...


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
    written REAL,
    gone INTEGER,
    gone_status INTEGER,
    PRIMARY KEY (target, key_column, key_value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lineage (
    target TEXT NOT NULL,
    origin TEXT NOT NULL,
    number INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    digest TEXT NOT NULL,
    run INTEGER NOT NULL,
    written REAL,
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
    # When this tool last wrote a key's or a row's task (its clock), the run that found the
    # key gone from its export and cancelled its task, and the task's status before (an undo
    # of that run puts it back).
    "keys": ("written REAL", "gone INTEGER", "gone_status INTEGER"),
    "lineage": ("written REAL",),
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
    """A stable digest of what a row sends (its task ``id`` left out, and a field sent empty to
    clear it: a blank cell's digest is the same whether it clears or keeps): equal digests,
    same task."""
    content = {k: v for k, v in params.items() if k != "id" and v != ""}
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


#: A row's task, or a key's, and what was last sent to it, when (``written``: ``None`` keeps
#: the time of the write before, for a row left unchanged); a key set again is no longer gone.
_SET_LINEAGE = (
    "INSERT INTO lineage (target, origin, number, task_id, digest, run, written) VALUES (?, ?, "
    "?, ?, ?, ?, ?) ON CONFLICT (target, origin, number) DO UPDATE SET task_id = "
    "excluded.task_id, digest = excluded.digest, run = excluded.run, written = "
    "COALESCE(excluded.written, lineage.written)"
)


_SET_KEY = (
    "INSERT INTO keys (target, key_column, key_value, task_id, digest, run, written) VALUES (?, "
    "?, ?, ?, ?, ?, ?) ON CONFLICT (target, key_column, key_value) DO UPDATE SET task_id = "
    "excluded.task_id, digest = excluded.digest, run = excluded.run, written = "
    "COALESCE(excluded.written, keys.written), gone = NULL"
)


def _record(row: Sequence[Any]) -> RunRecord:
    """A ``runs`` line (its :data:`_RUN_COLUMNS`) as a record."""
    values = list(row)
    values[5] = json.loads(values[5])
    return RunRecord(*values)


def _row_counts(db: Db, run_id: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for state, result, n in db.execute(
        "SELECT state, result, COUNT(*) FROM rows WHERE run = ? GROUP BY state, result",
        (run_id,),
    ):
        counts[result if state == "done" else state] += n
    return counts


@dataclass(frozen=True)
class Cancelled:
    """A key whose task a run cancelled as gone from its export: the task's ``status`` before
    (``None``: not kept, by an earlier version) and when this tool wrote it (the cancel)."""

    column: str
    key: str
    task_id: int
    status: int | None
    written: float | None


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


def _chunked(db: Db, query: str, args: tuple[Any, ...], values: Sequence[Any]) -> dict[Any, Any]:
    """``query`` (one ``IN ({})``) over ``values`` 500 at a time: first column → the rest (a
    tuple, or the one value when there is one)."""
    found: dict[Any, Any] = {}
    for start in range(0, len(values), 500):
        part = values[start : start + 500]
        sql = query.format(",".join("?" * len(part)))
        for first, *rest in db.execute(sql, (*args, *part)):
            found[first] = tuple(rest) if len(rest) > 1 else (rest[0] if rest else None)
    return found


def read_only_journal(path: Path | str) -> Db | None:
    """The journal at ``path`` (a file, or a PostgreSQL database's URL) opened for reading
    only, without its lock (a run may be writing it); ``None`` when there is none yet."""
    if is_postgres(path):
        db = PgConnection(str(path), read_only=True)
        try:
            db.raw("SELECT 1 FROM keys LIMIT 1")
        except Exception:  # no journal's tables in this database yet
            db.close()
            return None
        return db
    if not Path(path).exists():
        return None
    try:
        lite = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        lite.execute("SELECT 1 FROM keys LIMIT 1")
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"the journal {path} cannot be read: {exc}") from None
    return lite


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


def is_done(bits: bytearray, number: int) -> bool:
    index = number >> 3
    return index < len(bits) and bool(bits[index] & (1 << (number & 7)))
