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
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from typing import Any

from .dates import DateError, DateRules, to_api
from .fields import FIELDS_BY_NAME, STATUSES
from .map import END_TIME, ColumnMapping, canon
from .model import Outcome, Payload, Row

#: The API's code for a value of the wrong type or outside its set.
INVALID_VALUE = 23016
BAD_DATE = "BAD_DATE"
_WHOLE = re.compile(r"\s*\+?(\d+)(?:\.0*)?\s*")
#: How many distinct due-date texts a run remembers: sheets repeat their dates a lot.
_DATE_CACHE = 200_000
_WORD_CACHE = 10_000


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


def to_text(value: Any) -> str:
    """Text for a text field: outer whitespace trimmed; numbers and dates written plainly."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | time):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value)


def _shown(value: Any) -> str:
    return repr(value.strip()) if isinstance(value, str) else str(value)


def _word_key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return canon(str(value))


def _blank(value: Any) -> bool:
    return value is None or value == "" or (value.__class__ is str and value.isspace())


class Normaliser:
    """Turns rows into payloads with one mapping and one set of date rules.

    Call it with a :class:`Row`: a :class:`Payload`, or an ``invalid`` :class:`Outcome` naming
    the first column that cannot be read.
    """

    def __init__(self, mapping: ColumnMapping, rules: DateRules) -> None:
        self.mapping = mapping
        self.rules = rules
        self._status = mapping.status_words
        self._priority = mapping.priority_words
        self._dates: dict[Any, Any] = {}
        self._status_cache: dict[Any, Any] = {}
        self._priority_cache: dict[Any, Any] = {}
        self._time_column = mapping.columns.get(END_TIME)
        self._columns = dict(mapping.columns)
        self._due_column = mapping.columns.get("endDatetime")
        self._plan = [
            (name, column, self._converter(name))
            for name, column in mapping.columns.items()
            if name not in (END_TIME, "endDatetime")
        ]

    def _converter(self, name: str) -> Callable[[Any], Any]:
        kind = FIELDS_BY_NAME[name].type
        if kind == "integer":
            return to_integer
        if kind == "status":
            return self.status
        if kind == "priority":
            return self.priority
        return to_text

    def status(self, value: Any) -> int | None:
        return self._cached(self._status_cache, self._status_of, value)

    def priority(self, value: Any) -> str | None:
        return self._cached(self._priority_cache, self._priority_of, value)

    @staticmethod
    def _cached(cache: dict[Any, Any], convert: Callable[[Any], Any], value: Any) -> Any:
        """Words repeat down a column: each distinct cell is looked up once."""
        key = (value.__class__, value)
        try:
            result = cache[key]
        except KeyError:
            try:
                result = convert(value)
            except CellError as exc:
                result = exc
            if len(cache) < _WORD_CACHE:
                cache[key] = result
        if isinstance(result, CellError):
            raise result
        return result

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

    def due(self, value: Any, clock: Any = None) -> tuple[str, list[str]]:
        key = (value.__class__, value, clock)  # 1 and 1.0 and True read differently
        cached = self._dates.get(key)
        if cached is not None:
            if isinstance(cached, CellError):
                raise cached
            return cached
        try:
            converted = to_api(value, self.rules, clock)
            result: Any = (converted.timestamp, converted.warnings)
        except DateError as exc:
            result = CellError(BAD_DATE, str(exc))
        if len(self._dates) < _DATE_CACHE:
            self._dates[key] = result
        if isinstance(result, CellError):
            raise result
        return result

    def __call__(self, row: Row) -> Payload | Outcome:
        params: dict[str, Any] = {}
        warnings: tuple[str, ...] = ()
        cells = row.cells
        column = self._due_column
        try:
            if column is not None:
                raw = cells.get(column)
                if not _blank(raw):
                    params["endDatetime"], notes = self.due(raw, self._clock(cells))
                    if notes:
                        warnings = tuple(f"{column}: {n}" for n in notes)
            for name, column, convert in self._plan:
                raw = cells.get(column)
                if raw is None or raw == "" or (raw.__class__ is str and raw.isspace()):
                    continue
                value = convert(raw)
                if value is not None and value != "":  # None: a word meaning "not set"
                    params[name] = value
        except CellError as exc:
            return Outcome(
                "invalid", error_code=exc.code, field=column, message=str(exc), warnings=warnings
            )
        return Payload(row, params, self._columns, warnings)

    def _clock(self, cells: Mapping[str, Any]) -> Any:
        if self._time_column is None:
            return None
        clock = cells.get(self._time_column)
        return None if _blank(clock) else clock
