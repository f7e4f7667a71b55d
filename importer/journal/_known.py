"""What the journal knows of a target: keys, lineage, digests, tasks, befores, past imports."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from ._schema import _RUN_COLUMNS, Db, RunRecord, _chunked, _record, _row_counts


class Known:
    """What a journal knows of one target's tasks, on a connection of its own or the journal's
    (``validate`` reads without the lock, a run with it). A ``None`` journal knows nothing."""

    def __init__(self, db: Db | None, target: str) -> None:
        self._db = db
        self.target = target

    @property
    def empty(self) -> bool:
        """Whether there is no journal at all (it knows no task, key or row)."""
        return self._db is None

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

    def knows_keys(self, column: str) -> bool:
        """Whether any row of this target was imported under key column ``column``."""
        if self._db is None:
            return False
        found = self._db.execute(
            "SELECT 1 FROM keys WHERE target = ? AND key_column = ? LIMIT 1", (self.target, column)
        ).fetchone()
        return found is not None

    def lineage(self, origin: str, numbers: Iterable[int]) -> dict[int, tuple[int, str]]:
        """``row number → (task id, digest)`` for the rows of ``origin`` among ``numbers`` that
        became tasks."""
        return self._ask(
            "SELECT number, task_id, digest FROM lineage WHERE target = ? AND origin = ? AND "
            "number IN ({})",
            (self.target, origin),
            numbers,
        )

    def has_lineage(self, origin: str) -> bool:
        """Whether any row of ``origin`` became a task of this target."""
        if self._db is None:
            return False
        found = self._db.execute(
            "SELECT 1 FROM lineage WHERE target = ? AND origin = ? LIMIT 1", (self.target, origin)
        ).fetchone()
        return found is not None

    def digests(self, task_ids: Iterable[int]) -> dict[int, str]:
        """``task id → digest`` of what this tool last sent to each of ``task_ids`` it knows by
        a row's lineage or a legacy id."""
        wanted = list(task_ids)
        found: dict[int, str] = {}
        for table in ("keys", "lineage"):
            query = f"SELECT task_id, digest FROM {table} WHERE target = ? AND task_id IN ({{}})"
            found.update(self._ask(query, (self.target,), wanted))
        return found

    def written(self, task_ids: Iterable[int]) -> dict[int, float]:
        """``task id → when this tool last wrote it`` (its clock, seconds since the epoch), for
        those of ``task_ids`` it knows the time of."""
        wanted = list(task_ids)
        found: dict[int, float] = {}
        for table in ("lineage", "keys"):
            query = (
                f"SELECT task_id, MAX(written) FROM {table} WHERE target = ? AND written IS NOT "
                "NULL AND task_id IN ({}) GROUP BY task_id"
            )
            for task, when in self._ask(query, (self.target,), wanted).items():
                found[task] = max(when, found.get(task, when))
        return found

    def vanished(self, column: str, present: set[str]) -> Iterator[tuple[str, int, int]]:
        """``(key, task id, run)`` for each key imported under ``column`` (not cancelled as
        missing since) that ``present`` does not hold: the rows gone from the export."""
        if self._db is None:
            return
        for value, task_id, run in self._db.execute(
            "SELECT key_value, task_id, run FROM keys WHERE target = ? AND key_column = ? AND "
            "gone IS NULL ORDER BY run, key_value",
            (self.target, column),
        ):
            if value not in present:
                yield str(value), int(task_id), int(run)

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
