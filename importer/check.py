"""Row checks: each row normalised and validated (online when a directory is given), a key given
twice refused, identical rows warned of; a results sheet's rows kept with their earlier outcome."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any, get_args

from .directory import Directory
from .fields import DUPLICATE_KEY
from .model import VANISHED, Outcome, Payload, Result, Row
from .prepare import Prepared
from .read import is_blank
from .results import (
    whole,
)
from .summary import IDENTICAL
from .validate import validate

#: How many rows' contents are remembered to warn of identical rows (memory stays bounded).
_IDENTICAL_LIMIT = 2_000_000


def checked_rows(
    prepared: Prepared,
    directory: Directory | None = None,
    *,
    default_venue: int | None = None,
    key: str | None = None,
    only: frozenset[str] | None = None,
    numbers: Collection[int] | None = None,
) -> Iterator[tuple[Row, Payload | Outcome]]:
    """Every row with its payload ready to send, or with the ``invalid`` outcome that stops it:
    normalised, validated (online when a ``directory`` is given), the same ``key`` value twice
    refused (:func:`prepare` checked the column exists), identical rows warned of. For a
    results sheet read back with ``only``, a row whose earlier result is not among ``only``
    keeps its earlier outcome. With ``numbers``, only the rows of those numbers (the others are
    read, not checked: a re-check of rows a person corrected; the checks across rows, a key
    given twice and identical rows, then see only these rows)."""
    normaliser = prepared.normaliser()
    first_of_key: dict[str, int] = {}
    first_of_content: dict[int, int] = {}
    earlier = prepared.earlier
    for batch in prepared.source.batches(numbers=numbers):
        for row, normalised in normaliser.batch(batch).items():
            if earlier is not None:
                before = str(row.cells.get(earlier["result"]) or "").strip()
                # A key gone from an earlier export is no row to send: kept as it was.
                if before in VANISHED or (only is not None and before not in only):
                    yield row, _kept(row, earlier, before)
                    continue
            checked = normalised
            if isinstance(normalised, Payload):
                checked = validate(normalised, directory, default_venue=default_venue)
            if key is not None:
                value = key_of(row, key)  # as the journal keys it: 1234.0 is 1234
                if value and value in first_of_key:
                    first = first_of_key[value]
                    checked = Outcome(
                        "invalid",
                        error_code=DUPLICATE_KEY,
                        field=key,
                        message=f"{key} {value!r} is already on row {first}",
                        warnings=checked.warnings,
                    )
                elif value:
                    first_of_key[value] = row.number
            elif isinstance(checked, Payload) and len(first_of_content) < _IDENTICAL_LIMIT:
                content = hash(tuple(sorted(checked.params.items())))
                first = first_of_content.setdefault(content, row.number)
                if first != row.number:
                    checked = checked._replace(warnings=(*checked.warnings, f"{IDENTICAL}{first}"))
            yield row, checked


RESULTS: frozenset[str] = frozenset(get_args(Result))


def key_of(row: Row, key: str) -> str:
    """A row's legacy id (``--key``) as text: ``1234`` for a workbook's 1234.0."""
    value = row.cells.get(key)
    return "" if is_blank(value) else str(whole(value)).strip()


def _kept(row: Row, earlier: dict[str, str], result: str) -> Outcome:
    """A row of a results sheet that ``--only`` did not pick: its earlier outcome, as it was."""

    def cell(name: str) -> Any:
        value = whole(row.cells.get(earlier[name]))
        if isinstance(value, str):
            value = value.strip()
            value = int(value) if value.isdigit() else value
        return None if is_blank(value) else value

    task_id = cell("task_id")
    warnings = [w for w in str(cell("warnings") or "").split("; ") if w]
    return Outcome(
        result if result in RESULTS else "skipped",  # type: ignore[arg-type]
        task_id=task_id if isinstance(task_id, int) else None,
        error_code=cell("error_code"),
        field=cell("field"),
        message=str(cell("message") or ""),
        warnings=(*warnings, "kept from the earlier results: not picked by --only"),
    )
