"""The journal in PostgreSQL (``--state postgresql://…``): the same tables and statements as the
SQLite file, through psycopg 3.

The journal's statements are written once, in SQLite's dialect; :func:`dialect` turns each into
PostgreSQL's (placeholders, ``INSERT OR REPLACE``/``OR IGNORE`` as ``ON CONFLICT``, the schema's
types). A run's lock is a session advisory lock on its target, so runs into different targets
share one database at once, and a run killed any way frees its lock with its connection.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import JournalLost, UsageError


def _not_ignored(record: logging.LogRecord) -> bool:
    """psycopg logs the error it meets closing a pipeline or a transaction on a connection
    already lost, and ignores it: the first error is raised, shown as :class:`JournalLost`."""
    return not str(record.msg).startswith("error ignored")


logging.getLogger("psycopg").addFilter(_not_ignored)

#: What a ``--state`` value that is a PostgreSQL database begins with.
SCHEMES = ("postgresql://", "postgres://")


def is_postgres(state: object) -> bool:
    return isinstance(state, str) and state.startswith(SCHEMES)


def shown(url: str) -> str:
    """``url`` as it may be shown: without its password or query (which may carry one)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{parts.username}@" if parts.username else "") + host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _scrub(text: str, url: str) -> str:
    secret = _password(url)
    return text.replace(secret, "***") if secret else text


#: Every journal table's columns, in order, and its primary key: what ``INSERT OR REPLACE``
#: becomes (a replace sets every other column, to NULL when the statement does not give it).
_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}


#: Each journal table's columns' types, in PostgreSQL's names (for :func:`merged`'s arrays).
_TYPES: dict[str, dict[str, str]] = {}

_PG_TYPES = {"INTEGER": "bigint", "TEXT": "text", "REAL": "double precision"}


def _learn_tables(schema: str) -> None:
    for name, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\)", schema, re.S):
        columns: list[str] = []
        key: tuple[str, ...] = ()
        types: dict[str, str] = {}
        for line in body.strip().splitlines():
            line = line.strip().rstrip(",")
            if line.startswith("PRIMARY KEY"):
                key = tuple(c.strip() for c in line[line.index("(") + 1 : -1].split(","))
            else:
                columns.append(line.split()[0])
                types[columns[-1]] = _PG_TYPES.get(line.split()[1], "text")
                if "PRIMARY KEY" in line:
                    key = (columns[-1],)
        _TABLES[name] = (tuple(columns), key)
        _TYPES[name] = types


_INSERT = re.compile(r"^INSERT OR (REPLACE|IGNORE) INTO (\w+)\s*(\(([^)]*)\))?\s*VALUES", re.S)


@lru_cache(maxsize=256)
def dialect(sql: str) -> str:
    """One journal statement in PostgreSQL's dialect."""
    if sql == "BEGIN IMMEDIATE":
        return "BEGIN"
    text = sql.replace("%", "%%").replace("?", "%s")
    found = _INSERT.match(text)
    if found:
        how, table, _, listed = found.groups()
        columns, key = _TABLES[table]
        given = [c.strip() for c in listed.split(",")] if listed else list(columns)
        text = f"INSERT INTO {table} ({', '.join(given)}) VALUES" + text[found.end() :]
        if how == "IGNORE":
            text += " ON CONFLICT DO NOTHING"
        else:
            sets = ", ".join(
                f"{c} = EXCLUDED.{c}" if c in given else f"{c} = NULL"
                for c in columns
                if c not in key
            )
            text += f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
    return text


#: An insert's one row of placeholders, and what follows it.
_VALUES = re.compile(r"^(INSERT INTO (\w+) \(([^)]*)\) VALUES )(\([^()]*\))(.*)$", re.S)

#: The most rows one merged insert carries (PostgreSQL takes at most 65,535 parameters).
MERGED_ROWS = 1000


def merged(
    statements: Sequence[tuple[str, Sequence[Any]]],
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """``statements`` in PostgreSQL's dialect, for one transaction: the statements of each
    kind together (a statement moves up past others only when none of them names a table it
    names, so every table sees its statements in their order), and each kind's inserts merged
    into one statement of many rows (``VALUES (…), (…)``: one parse and execution, not one
    per row), unless two of its rows have the same key (an upsert may not touch a row twice
    in one statement)."""
    groups: list[tuple[str, frozenset[str], list[tuple[Any, ...]]]] = []
    for sql, args in statements:
        names = _tables_named(sql)
        joined = False
        for sql_, names_, rows in reversed(groups):
            if sql_ == sql and len(rows) < MERGED_ROWS:
                rows.append(tuple(args))
                joined = True
                break
            if names_ & names:
                break
        if not joined:
            groups.append((sql, names, [tuple(args)]))
    for sql, _, rows in groups:
        text = dialect(sql)
        found = _VALUES.match(text) if len(rows) > 1 else None
        shaped = None
        if found is not None:
            shaped = _as_arrays(found.group(2), found.group(3), found.group(4), rows)
        if found is not None and shaped is not None:
            head, tail = found.group(1), found.group(5)
            selected, arrays, args = shaped
            aliases = ", ".join(f"v{n}" for n in range(len(args)))
            yield (
                f"{head.removesuffix('VALUES ')}SELECT {selected} FROM unnest({arrays}) AS "
                f"u({aliases}) WHERE true{tail}",
                args,
            )
        else:
            yield from ((text, r) for r in rows)


@lru_cache(maxsize=256)
def _tables_named(sql: str) -> frozenset[str]:
    """The journal's tables a statement names (any it reads or writes); all of them when it
    names none that is known (it is then kept in its place)."""
    words = set(re.findall(r"\w+", sql))
    return frozenset(words & set(_TABLES)) or frozenset(_TABLES) | {"*"}


def _as_arrays(
    table: str, listed: str, row: str, rows: list[tuple[Any, ...]]
) -> tuple[str, str, tuple[list[Any], ...]] | None:
    """An insert of many ``rows`` as the parts of one ``INSERT … SELECT … FROM unnest(…)``:
    its text the same whatever the number of rows (parsed and planned once), each column's
    values one array. ``None`` when it cannot be: an unknown table or column, values it
    cannot split, or two rows with the same key (an upsert may not touch a row twice in one
    statement)."""
    if table not in _TABLES:
        return None
    given = [c.strip() for c in listed.split(",")]
    values = [v.strip() for v in row[1:-1].split(",")]
    types = _TYPES[table]
    if len(values) != len(given) or not set(given) <= set(types):
        return None
    selected: list[str] = []
    arrays: list[str] = []
    args: list[list[Any]] = []
    places: dict[str, int] = {}
    for column, value in zip(given, values, strict=True):
        if value != "%s":
            selected.append(value)  # a literal of the statement's own
            continue
        kind = types[column]
        places[column] = at = len(args)
        selected.append(f"v{at}")
        arrays.append(f"%s::{kind}[]")
        args.append([_typed(r[at], kind) for r in rows])
    key = _TABLES[table][1]
    if not set(key) <= set(places):
        return None
    if len({tuple(r[places[k]] for k in key) for r in rows}) != len(rows):
        return None
    return ", ".join(selected), ", ".join(arrays), tuple(args)


def _typed(value: Any, kind: str) -> Any:
    """A value as its column's array holds it (an array has one element type)."""
    if value is None:
        return None
    if kind == "text":
        return value if isinstance(value, str) else str(value)
    if kind == "bigint":
        return int(value)
    return float(value)


def schema(sqlite_schema: str) -> list[str]:
    """The journal's schema, as PostgreSQL statements."""
    _learn_tables(sqlite_schema)
    text = sqlite_schema.replace(") WITHOUT ROWID;", ");")
    text = text.replace(
        "INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    )
    text = re.sub(r"\bINTEGER\b", "BIGINT", text)
    text = re.sub(r"\bREAL\b", "DOUBLE PRECISION", text)
    return [s.strip() for s in text.split(";") if s.strip()]


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for ``name`` (stable across processes and versions)."""
    value = int.from_bytes(hashlib.sha256(f"ivvy-task-importer:{name}".encode()).digest()[:8])
    return value - (1 << 64) if value >= 1 << 63 else value


class PgConnection:
    """A psycopg connection that speaks as the journal's ``sqlite3`` connection does:
    ``execute`` (a cursor: iterate, ``fetchone``, ``fetchall``, ``rowcount``),
    ``executemany``, ``close``; transactions are the statements' own ``BEGIN``/``COMMIT``."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        try:
            import psycopg
        except ImportError:
            raise UsageError(
                "a PostgreSQL journal needs psycopg 3: pip install 'ivvy-task-importer[postgresql]'"
            ) from None
        self.url = url
        #: What says the connection is gone (not a statement's own error).
        self._lost: tuple[type[BaseException], ...] = (psycopg.OperationalError,
                                                        psycopg.InterfaceError)  # fmt: skip
        try:
            # The URL may name the connection (a job of its own in pg_stat_activity).
            given = psycopg.conninfo.conninfo_to_dict(url)
            name = str(given.get("application_name") or "task-import")
            self._conn = psycopg.connect(
                url, autocommit=True, connect_timeout=10, application_name=name
            )
            if read_only:
                self._conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            raise UsageError(
                f"cannot use the PostgreSQL journal {shown(url)}: {_scrub(str(exc).strip(), url)}"
            ) from None

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """The connection's loss (the server went away, a network cut, the backend ended) as
        :class:`~importer.errors.JournalLost`, naming the database without its password."""
        try:
            yield
        except self._lost as exc:
            why = _scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "", self.url)
            raise JournalLost(shown(self.url), why or type(exc).__name__) from None

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        with self._answering():
            return self._conn.execute(dialect(sql), tuple(args))

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> None:
        with self._answering(), self._conn.cursor() as cursor:
            cursor.executemany(dialect(sql), [tuple(args) for args in seq])

    def write_all(
        self, statements: Sequence[tuple[str, Sequence[Any]]], *, durable: bool = True
    ) -> None:
        """``statements`` in one transaction, sent in a pipeline (not one round trip each: a
        run's writes alternate between tables); a run of the same insert, one statement of
        many rows (see :func:`merged`). Not ``durable``: the commit does not wait for the
        server's disk (``synchronous_commit`` off for it: only a crash of the server itself
        can lose it, and a later durable commit makes it durable too)."""
        with (
            self._answering(),
            self._conn.transaction(),
            self._conn.pipeline(),
            self._conn.cursor() as cursor,
        ):
            if not durable:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            for sql, args in merged(statements):
                cursor.execute(sql, args)

    def raw(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """A statement in PostgreSQL's own dialect."""
        with self._answering():
            return self._conn.execute(sql, tuple(args))

    def close(self) -> None:
        # The session's advisory locks (a run's hold on its target) go with the backend, but
        # the backend ends after the socket closes: a run started right after this one could
        # still find them held. Let go of them first, while the connection still answers.
        import psycopg

        with suppress(psycopg.Error):
            if not self._conn.closed:
                if self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    self._conn.execute("ROLLBACK")  # what closing would have undone
                self._conn.execute("SELECT pg_advisory_unlock_all()")
        self._conn.close()
