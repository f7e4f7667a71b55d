"""Normalise: raw cells → typed API values, or the reason a cell cannot become one.

- ids and other integers from ``1234``, ``"1234"``, ``1234.0``, ``" 1234 "``; ``12.5``, ``12a``
  and ``1e3`` are refused (23016, the API's code for a parameter that does not validate);
- status from 0–4, its label or a clear synonym, priority from its words, in any case and
  spacing (the mapping carries the words, including a profile's); anything else is refused with
  the accepted words listed (23016);
- the due date through :mod:`importer.dates` (``BAD_DATE`` when it cannot be read);
- text with its outer whitespace trimmed and everything else kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, time
from itertools import compress, count, repeat
from operator import is_
from typing import Any, NamedTuple

from .dates import DateError, DateRules, naive_to_api, to_api
from .fields import (
    BAD_DATE,
    FIELDS_BY_NAME,
    REQUIRED,
    REQUIRED_ON_CREATE,
    STATUSES,
    UNSAVED_FORMULA,
)
from .fields import DOES_NOT_VALIDATE as INVALID_VALUE
from .map import END_TIME, ColumnMapping, canon
from .model import Email, Outcome, Payload, Row
from .read import Batch, Unsaved, is_blank

_WHOLE = re.compile(r"\s*\+?(\d+)(?:\.0*)?\s*")
#: How many distinct due-date texts a run remembers: sheets repeat their dates a lot.
_DATE_CACHE = 200_000
_WORD_CACHE = 10_000


#: Text fields sent as written, not trimmed (a name is trimmed of the spaces around it).
KEPT_AS_WRITTEN = frozenset({"description"})


class CellError(ValueError):
    """A cell that cannot become its field's value; ``code`` is the row's error code."""

    def __init__(self, code: int | str, message: str) -> None:
        self.code = code
        super().__init__(message)


def to_integer(value: Any) -> int:
    """A whole number from a cell; CellError for anything else (fractions, words, exponents)."""
    if value.__class__ is str and value.isdigit() and value.isascii():
        return int(value)  # the common case, first
    if isinstance(value, bool):
        raise CellError(INVALID_VALUE, f"{value} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise CellError(INVALID_VALUE, f"{value} is not a whole number")
    if isinstance(value, str):
        match = _WHOLE.fullmatch(value)
        if match:
            return int(match.group(1))
    raise CellError(INVALID_VALUE, f"{_shown(value)} is not a whole number")


#: Fields that may hold an e-mail instead of an id (resolved online by validate).
EMAIL_FIELDS = frozenset({"contactId", "assignedUserId"})
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def to_id_or_email(value: Any) -> int | Email:
    """An id, or an e-mail standing for one (a user's, a contact's)."""
    if isinstance(value, str) and "@" in value:
        text = value.strip()
        if not _EMAIL.fullmatch(text):
            raise CellError(INVALID_VALUE, f"{text!r} is neither an id nor an e-mail")
        return Email(text.lower())
    return to_integer(value)


def to_text(value: Any) -> str:
    """Text for a text field: outer whitespace trimmed; numbers and dates written plainly."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | time):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a workbook's 1234.0 is the 1234 a person typed
    return str(value)


def _unsaved(value: Unsaved) -> CellError:
    return CellError(
        UNSAVED_FORMULA,
        f"a formula with no saved value ({str(value)[:60]}): open and save the file in Excel or "
        "LibreOffice",
    )


def _shown(value: Any) -> str:
    return repr(value.strip()) if isinstance(value, str) else str(value)


def _word_key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return canon(str(value))


class _Noted(NamedTuple):
    """A due date converted with warnings (a two-digit year, a time that occurs twice)."""

    timestamp: str
    notes: tuple[str, ...]


class Normalised(NamedTuple):
    """A batch normalised column by column. Rows become :class:`Payload` or :class:`Outcome`
    objects only when :meth:`items` walks them, as the send stage takes them."""

    source: Batch
    headers: tuple[str, ...]
    #: (field, source column, converted values), in field order: a row's first error wins.
    plan: list[tuple[str, str, list[Any]]]
    bad: set[int]
    notes: dict[int, tuple[str, ...]]
    mapped: dict[str, str]

    @property
    def valid(self) -> int:
        """How many rows of the batch normalised without an error."""
        return len(self.source.numbers) - len(self.bad)

    def items(self) -> Iterator[tuple[Row, Payload | Outcome]]:
        """``(row, payload or invalid outcome)`` for each row, in order."""
        headers, names = self.headers, [name for name, _, _ in self.plan]
        by_row: Iterator[tuple[Any, ...]] = zip(
            *(values for _, _, values in self.plan), strict=True
        )
        if not self.plan:
            by_row = iter([()] * len(self.source.numbers))
        for i, (number, cells, values) in enumerate(
            zip(self.source.numbers, self.source.rows, by_row, strict=True)
        ):
            row = Row(number, dict(zip(headers, cells, strict=True)))
            warnings = self.notes.get(i, ())
            if i in self.bad:
                yield row, self._first_error(i, warnings)
                continue
            params = {n: v for n, v in zip(names, values, strict=True) if v is not None and v != ""}
            yield row, Payload(row, params, self.mapped, warnings)

    def item(self, i: int) -> tuple[Row, Payload | Outcome]:
        """Row ``i`` of the batch and its payload or invalid outcome, as :meth:`items` gives it."""
        cells = [column[i] for column in self.source.columns]
        row = Row(self.source.numbers[i], dict(zip(self.headers, cells, strict=True)))
        warnings = self.notes.get(i, ())
        if i in self.bad:
            return row, self._first_error(i, warnings)
        params = {n: v[i] for n, _, v in self.plan if v[i] is not None and v[i] != ""}
        return row, Payload(row, params, self.mapped, warnings)

    def _first_error(self, i: int, warnings: tuple[str, ...]) -> Outcome:
        """The row's outcome: its first problem's code and column, and in its message every
        problem of the row (a person fixes a row once, not in rounds)."""
        errors = [(h, v[i]) for _, h, v in self.plan if v[i].__class__ is CellError]
        if not errors:
            raise AssertionError("a row marked bad has no error")
        creating = not any(n == "id" and v[i] not in (None, "") for n, _, v in self.plan)
        if creating:
            for name, header, values in self.plan:
                if name in REQUIRED_ON_CREATE and values[i] in (None, ""):
                    errors.append((header, CellError(REQUIRED, f"{name} is required to create a "
                                                     "task")))  # fmt: skip
        header, first = errors[0]
        message = str(first) + "".join(f"; also {h}: {e}" for h, e in errors[1:])
        return Outcome(
            "invalid", error_code=first.code, field=header, message=message, warnings=warnings
        )


_MISS = object()


def _all_text(values: Sequence[Any]) -> bool:
    return set(map(type, values)) <= {str}


def _keys(values: Sequence[Any]) -> Sequence[Any]:
    """Cache keys: the cells themselves, unless a column mixes True with numbers (True == 1 as a
    key, but TRUE and 1 can read differently, as a status for one)."""
    if bool not in set(map(type, values)):
        return values
    return [v if v.__class__ is str else (v.__class__, v) for v in values]


def _through_cache(
    cache: dict[Any, Any],
    values: Sequence[Any],
    keys: Sequence[Any],
    fill: Callable[[Any], Any],
    limit: int,
    many: Callable[[list[Any]], list[Any]] | None = None,
) -> list[Any]:
    """``fill(value)`` for each value, each distinct key computed once: cells repeat down a
    column, and the look-ups run in C. ``many`` (optional) gives the values of a batch's
    misses at once, or ``_MISS`` for those to be filled one by one."""
    out = list(map(cache.get, keys, repeat(_MISS)))
    misses: Iterable[int] = compress(count(), map(is_, out, repeat(_MISS)))  # found in C
    if many is not None and (misses := list(misses)):
        for i, got in zip(misses, many([values[i] for i in misses]), strict=True):
            if got is not _MISS:
                out[i] = got
                if len(cache) < limit:
                    cache[keys[i]] = got
        misses = [i for i in misses if out[i] is _MISS]
    for i in misses:
        key = keys[i]
        got = cache.get(key, _MISS)  # an earlier miss of this batch may have filled it
        if got is _MISS:
            got = fill(values[i])
            if len(cache) < limit:
                cache[key] = got
        out[i] = got
    return out


class Normaliser:
    """Turns rows into payloads with one mapping and one set of date rules, a column at a time.

    :meth:`batch` takes rows as a reader's batch gives them (cells aligned to the headers); calling
    the normaliser with one :class:`Row` does the same for that row. Each row becomes a
    :class:`Payload`, or an ``invalid`` :class:`Outcome` naming the first column (in field order)
    that cannot be read. Values repeat down a column, so each distinct cell is converted once.
    """

    def __init__(
        self,
        mapping: ColumnMapping,
        rules: DateRules,
        headers: Sequence[str] | None = None,
        *,
        text_only: bool = False,
    ) -> None:
        """``text_only``: every cell is a string (a CSV), so no cell needs its type checked."""
        self.mapping = mapping
        self.rules = rules
        self.headers = tuple(headers) if headers is not None else None
        self._text_only = text_only
        self._status = mapping.status_words
        self._priority = mapping.priority_words
        self._columns = dict(mapping.columns)
        self._due = mapping.columns.get("endDatetime")
        self._time = mapping.columns.get(END_TIME)
        self._plan = [
            (name, column, FIELDS_BY_NAME[name].type)
            for name, column in mapping.columns.items()
            if name not in (END_TIME, "endDatetime")
        ]
        #: The fields a payload may have.
        self.fields = tuple(name for name in mapping.columns if name != END_TIME)
        self._caches: dict[str, dict[Any, Any]] = {name: {} for name in mapping.columns}
        #: Whether a column has held a value that cannot be converted (then batches are searched).
        self._errors: dict[str, bool] = dict.fromkeys(mapping.columns, False)
        #: Whether a due date has come with a warning (then batches are searched for them).
        self._noted = False

    def __call__(self, row: Row) -> Payload | Outcome:
        batch = Batch([row.number], [list(row.cells.values())])
        return next(self.batch(batch, tuple(row.cells)).items())[1]

    def batch(self, batch: Batch, headers: Sequence[str] | None = None) -> Normalised:
        """A batch of rows (cells aligned to ``headers``, by default the source's) normalised
        column by column; :meth:`Normalised.items` gives each row's payload or outcome."""
        headers = tuple(headers or self.headers or ())
        where = {h: i for i, h in enumerate(headers)}
        columns = batch.columns
        empty = (None,) * len(batch.numbers)

        def column(header: str | None) -> Sequence[Any]:
            return columns[where[header]] if header in where else empty

        plan: list[tuple[str, str, list[Any]]] = []
        notes: dict[int, tuple[str, ...]] = {}
        if self._due is not None:
            dues = self._due_values(column(self._due), column(self._time), notes)
            plan.append(("endDatetime", self._due, dues))
        for name, header, kind in self._plan:
            plan.append((name, header, self._values(name, kind, column(header))))
        bad: set[int] = set()
        for name, _, values in plan:
            if self._errors[name]:  # this column has met a bad value: look for it here
                bad.update(compress(count(), map(isinstance, values, repeat(CellError))))
        return Normalised(batch, headers, plan, bad, notes, self._columns)

    def _values(self, name: str, kind: str, raw: Sequence[Any]) -> list[Any]:
        """One column converted: a value, None or "" (blank, or a word meaning "not set"), or
        the CellError, for each cell."""
        if kind == "string":
            if name in KEPT_AS_WRITTEN:
                # Free text keeps its spaces (trailing ones, non-breaking ones); only a cell of
                # spaces alone is blank.
                if self._text_only or _all_text(raw):
                    values: list[Any] = list(raw)
                    for i in compress(count(), map(str.isspace, raw)):
                        values[i] = ""
                else:
                    values = [
                        (v if v.strip() else "") if v.__class__ is str else to_text(v) for v in raw
                    ]
            elif self._text_only or _all_text(raw):
                return list(map(str.strip, raw))
            else:
                values = [v.strip() if v.__class__ is str else to_text(v) for v in raw]
            if Unsaved in set(map(type, raw)):
                self._errors[name] = True
                values = [_unsaved(r) if r.__class__ is Unsaved else v
                          for r, v in zip(raw, values, strict=True)]  # fmt: skip
            return values
        convert = {"integer": to_integer, "status": self._status_of, "priority": self._priority_of}[
            kind
        ]
        if name in EMAIL_FIELDS:
            convert = to_id_or_email

        def fill(value: Any) -> Any:
            if is_blank(value):
                return None
            if value.__class__ is Unsaved:
                self._errors[name] = True
                return _unsaved(value)
            try:
                return convert(value)
            except CellError as exc:
                self._errors[name] = True
                return exc

        keys = raw if self._text_only else _keys(raw)
        return _through_cache(self._caches[name], raw, keys, fill, _WORD_CACHE)

    def _due_values(
        self, raw: Sequence[Any], clocks: Sequence[Any], notes: dict[int, tuple[str, ...]]
    ) -> list[Any]:
        """The due column: a timestamp, None or a CellError per cell; warnings go to ``notes``."""

        def fill(pair: tuple[Any, Any]) -> Any:
            value, clock = pair
            if is_blank(value):
                return None
            if value.__class__ is Unsaved or clock.__class__ is Unsaved:
                self._errors["endDatetime"] = True
                return _unsaved(value if value.__class__ is Unsaved else clock)
            try:
                converted = to_api(value, self.rules, None if is_blank(clock) else clock)
            except DateError as exc:
                self._errors["endDatetime"] = True
                return CellError(BAD_DATE, str(exc))
            if converted.warnings:
                self._noted = True
                prefix = f"{self._due}: "
                return _Noted(converted.timestamp, tuple(prefix + w for w in converted.warnings))
            return converted.timestamp

        if self._time is None:  # the common case: one cell per due date
            text = self._text_only or _all_text(raw)
            pairs: Sequence[Any] = raw  # each cell filled as (cell, no time), when missed
            keys = raw if text else _keys(raw)
            fill_one = lambda v: fill((v, None))  # noqa: E731
            many = None if text else self._naive_due_values
        else:
            pairs = list(zip(raw, clocks, strict=True))
            keys = [(v.__class__, v, c.__class__, c) for v, c in pairs]
            fill_one = fill
            many = None
        values = _through_cache(
            self._caches["endDatetime"], pairs, keys, fill_one, _DATE_CACHE, many
        )
        if self._noted:
            for i, value in enumerate(values):
                if value.__class__ is _Noted:
                    notes[i] = value.notes
                    values[i] = value.timestamp
        return values

    def _naive_due_values(self, cells: list[Any]) -> list[Any]:
        """The due dates of the cells that are naive datetimes (a workbook's date cells), a
        column at a time (see :func:`naive_to_api`); ``_MISS`` for any other cell, or one to be
        converted by itself."""
        out: list[Any] = [_MISS] * len(cells)
        naive = [i for i, c in enumerate(cells) if c.__class__ is datetime and c.tzinfo is None]
        for i, text in zip(naive, naive_to_api([cells[i] for i in naive], self.rules),
                           strict=True):  # fmt: skip
            if text is not None:
                out[i] = text
        return out

    def _status_of(self, value: Any) -> int | None:
        key = _word_key(value)
        if key in self._status:
            return self._status[key]
        if key.isdigit() and int(key) in STATUSES:
            return int(key)
        accepted = ", ".join(f"{c} ({label})" for c, label in STATUSES.items())
        raise CellError(INVALID_VALUE, f"unknown status {_shown(value)}; accepted: {accepted}")

    def _priority_of(self, value: Any) -> str | None:
        key = _word_key(value)
        if key in self._priority:
            return self._priority[key]
        words = sorted(w for w, p in self._priority.items() if p is not None)
        raise CellError(
            INVALID_VALUE, f"unknown priority {_shown(value)}; accepted: {', '.join(words)}"
        )
