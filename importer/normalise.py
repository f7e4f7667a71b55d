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
from collections.abc import Callable
from dataclasses import dataclass
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


class CellError(ValueError):
    """A cell that cannot become its field's value; ``code`` is the row's error code."""

    def __init__(self, code: int | str, message: str) -> None:
        self.code = code
        super().__init__(message)


def to_integer(value: Any) -> int:
    """A whole number from a cell; CellError for anything else (fractions, words, exponents)."""
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


@dataclass(frozen=True)
class _Column:
    field: str
    column: str
    convert: Callable[[Any], Any]


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
        self._time_column = mapping.columns.get(END_TIME)
        self._plan = [
            _Column(name, column, self._converter(name))
            for name, column in mapping.columns.items()
            if name != END_TIME
        ]

    def _converter(self, name: str) -> Callable[[Any], Any]:
        kind = FIELDS_BY_NAME[name].type
        if kind == "integer":
            return to_integer
        if kind == "status":
            return self.status
        if kind == "priority":
            return self.priority
        if kind == "timestamp":
            return self.due
        return to_text

    def status(self, value: Any) -> int | None:
        key = _word_key(value)
        if key in self._status:
            return self._status[key]
        if key.isdigit() and int(key) in STATUSES:
            return int(key)
        accepted = ", ".join(f"{c} ({label})" for c, label in STATUSES.items())
        raise CellError(INVALID_VALUE, f"unknown status {_shown(value)}; accepted: {accepted}")

    def priority(self, value: Any) -> str | None:
        key = _word_key(value)
        if key in self._priority:
            return self._priority[key]
        words = sorted(w for w, p in self._priority.items() if p is not None)
        raise CellError(
            INVALID_VALUE, f"unknown priority {_shown(value)}; accepted: {', '.join(words)}"
        )

    def due(self, value: Any, clock: Any = None) -> tuple[str, list[str]]:
        key = (value, clock) if isinstance(value, str | int | float) else None
        if key is not None and key in self._dates:
            cached = self._dates[key]
            if isinstance(cached, CellError):
                raise cached
            return cached
        try:
            converted = to_api(value, self.rules, clock)
            result: Any = (converted.timestamp, converted.warnings)
        except DateError as exc:
            result = CellError(BAD_DATE, str(exc))
        if key is not None and len(self._dates) < _DATE_CACHE:
            self._dates[key] = result
        if isinstance(result, CellError):
            raise result
        return result

    def __call__(self, row: Row) -> Payload | Outcome:
        params: dict[str, Any] = {}
        warnings: list[str] = []
        cells = row.cells
        for step in self._plan:
            raw = cells.get(step.column)
            if raw is None or raw == "" or (isinstance(raw, str) and not raw.strip()):
                continue
            try:
                if step.field == "endDatetime":
                    clock = cells.get(self._time_column) if self._time_column else None
                    if clock is None or (isinstance(clock, str) and not clock.strip()):
                        clock = None
                    value, notes = self.due(raw, clock)
                    warnings.extend(f"{step.column}: {n}" for n in notes)
                else:
                    value = step.convert(raw)
            except CellError as exc:
                return Outcome(
                    "invalid", error_code=exc.code, field=step.column, message=str(exc),
                    warnings=tuple(warnings),
                )  # fmt: skip
            if value is None or value == "":
                continue  # a word that means "not set" (HubSpot's priority NONE)
            params[step.field] = value
        return Payload(
            row=row, params=params, columns=dict(self.mapping.columns), warnings=tuple(warnings)
        )
